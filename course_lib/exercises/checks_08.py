"""Checks for the exercises of notebook 08 (monitoring and safe releases): a quantile read from a real server's
latency histogram, a canary choice that is the same in every process, and a drift verdict on iris windows.

Each check compares the learner's answer with the course's tested version (course_lib.monitoring, releases, drift)
and, when they differ, names the likely mistake by recomputing what that mistake would have answered.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import requests
from scipy.stats import ks_2samp

from course_lib.apps import iris_fastapi
from course_lib.data import iris_rows, iris_split
from course_lib.drift import KS_ALPHA, PSI_THRESHOLD, psi
from course_lib.exercises.elsewhere import call_in_new_process, inside_other_process, learner_code
from course_lib.models import train_iris_forest
from course_lib.monitoring import bucket_of_rank, histogram_buckets, histogram_quantile, parse_metrics
from course_lib.servers import serve

__all__ = ["check_quantile_from_buckets", "check_choose_version", "check_window_drifted"]

Buckets = list[tuple[float, float]]
INF = float("inf")

# --- exercise 1: a quantile from a latency histogram ----------------------------------------------------------------

# Cumulative (upper bound, count) pairs as histogram_buckets returns them. The ranks fall inside a bucket whose lower
# bound is not 0, in the first bucket, and into +Inf. Each likely mistake is first wrong in a case where it answers
# something no other mistake answers, except +Inf: QUANTILE_MISTAKES tries that hint first.
LATENCY = [(0.01, 20.0), (0.025, 60.0), (0.05, 90.0), (0.1, 98.0), (0.25, 100.0), (INF, 100.0)]
SLOW_TAIL = [(0.01, 5.0), (0.1, 50.0), (0.5, 90.0), (INF, 100.0)]  # 10 of 100 slower than the last finite bound
FAST = [(0.05, 50.0), (0.1, 100.0), (INF, 100.0)]
# 40 observations up to 0.025 s and none between 0.025 and 0.05: a rank of exactly 40 is in le=0.025 (>=), not
# at 0.05 (where a search with > lands)
GAP = [(0.01, 10.0), (0.025, 40.0), (0.05, 40.0), (0.1, 80.0), (0.25, 100.0), (INF, 100.0)]
ODD = [(0.01, 3.0), (0.05, 17.0), (0.1, 26.0), (0.5, 30.0), (INF, 30.0)]  # 30 observations: q × 30 is not whole
QUANTILE_CASES = (
    (0.5, LATENCY),  # first: the rank lands in a middle bucket, where each mistake answers its own value
    (0.95, LATENCY),
    (0.99, LATENCY),
    (0.95, SLOW_TAIL),
    (0.3, FAST),  # the first bucket: its lower bound is 0
    (0.95, ODD),  # rank 28.5: rounded to 28 or 29 it gives another value
    (0.4, GAP),  # rank 40, exactly the count of le=0.025, followed by an empty bucket
    (1.0, LATENCY),  # rank = every observation: the first bucket that holds them all, not +Inf
)
EMPTY_HISTOGRAMS = ([], [(0.01, 0.0), (0.1, 0.0), (INF, 0.0)])  # no series yet; a series with no observation
SERVER_REQUESTS = 60
SERVER_QUANTILES = (0.5, 0.9, 0.95, 0.99)
LATENCY_METRIC = "http_request_duration_seconds"


@lru_cache(maxsize=1)
def _forest() -> Any:
    """The source's forest (fast to train), once per kernel: the model of the check's real server."""
    return train_iris_forest()[0]


def _same(got: Any, expected: float) -> bool:
    """Whether got is the float expected (NaN equals NaN; a rounding error is not a difference)."""
    if not isinstance(got, (int, float, np.floating, np.integer)) or isinstance(got, bool):
        return False
    got = float(got)
    if math.isnan(expected):
        return math.isnan(got)
    return got == expected or math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12)


def _shown(buckets: Buckets) -> str:
    """Buckets as the learner reads them in a message: le=0.01: 20, …, le=+Inf: 100."""
    return ", ".join(f"le={'+Inf' if math.isinf(b) else f'{b:g}'}: {c:g}" for b, c in buckets)


def _per_bucket_reading(q: float, buckets: Buckets) -> float:
    """The mistake of reading cumulative counts as per-bucket counts: they are added up once more."""
    running = itertools.accumulate(count for _, count in buckets)
    return histogram_quantile(q, [(bound, total) for (bound, _), total in zip(buckets, running, strict=True)])


def _upper_bound_only(q: float, buckets: Buckets) -> float:
    """The mistake of answering the bucket's upper bound, without interpolating inside it."""
    return bucket_of_rank(q, buckets)[3]


def _from_zero(q: float, buckets: Buckets) -> float:
    """The mistake of interpolating from 0 instead of from the bucket's lower bound."""
    rank, _, lower_count, bound, count = bucket_of_rank(q, buckets)
    return bound * (rank - lower_count) / (count - lower_count)


def _infinite_top(q: float, buckets: Buckets) -> float:
    """The mistake of answering +Inf when the rank falls into the +Inf bucket."""
    return INF if math.isinf(bucket_of_rank(q, buckets)[3]) else histogram_quantile(q, buckets)


def _strictly_greater(q: float, buckets: Buckets) -> float:
    """The mistake of searching the first bucket whose count is > the rank instead of >= (past the end: +Inf)."""
    rank, lower_bound, lower_count = q * buckets[-1][1], 0.0, 0.0
    for bound, count in buckets:
        if count > rank:
            share = (rank - lower_count) / (count - lower_count)
            return lower_bound if math.isinf(bound) else lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return INF


def _rounded_rank(rounding: Callable[[float], float]) -> Callable[[float, Buckets], float]:
    """The mistake of rounding the rank q × n to a whole observation (nearest rank), then interpolating as PromQL."""

    def quantile(q: float, buckets: Buckets) -> float:
        whole = rounding(q * buckets[-1][1])
        return histogram_quantile(whole / buckets[-1][1], buckets)

    return quantile


def _cumulative_share(q: float, buckets: Buckets) -> float:
    """The mistake of interpolating with cumulative counts: rank ÷ count instead of the bucket's own share."""
    rank, lower, lower_count, bound, count = bucket_of_rank(q, buckets)
    return lower if math.isinf(bound) else lower + (bound - lower) * rank / count


def _divided_by_cumulative(q: float, buckets: Buckets) -> float:
    """The mistake of dividing by the cumulative count instead of the count of the bucket itself."""
    rank, lower, lower_count, bound, count = bucket_of_rank(q, buckets)
    return lower if math.isinf(bound) else lower + (bound - lower) * (rank - lower_count) / count


def _always_p95(q: float, buckets: Buckets) -> float:
    """The mistake of computing p95 whatever q is asked."""
    return histogram_quantile(0.95, buckets)


def _highest_finite(buckets: Buckets) -> str:
    """The largest finite upper bound, for a message."""
    return f"{max(b for b, _ in buckets if not math.isinf(b)):g}"


QUANTILE_MISTAKES: tuple[tuple[Callable[[float, Buckets], float], Callable[[Buckets], str]], ...] = (
    (
        _per_bucket_reading,
        lambda buckets: (
            "バケットの件数は累積です（le=0.05 の件数には、0.05 秒以下のすべて、つまり le=0.01 や le=0.025 の分も"
            "入っています）。全体の件数は最後の +Inf のバケットの件数で、件数を足し合わせてはいけません"
        ),
    ),
    (
        _infinite_top,
        lambda buckets: (
            "順位が +Inf のバケットに入ったとき、PromQL は有限の最大の上限"
            f"（ここでは {_highest_finite(buckets)}）を返します。+Inf は、グラフにもアラートのしきい値との比較にも"
            "使えません。「少なくともこの値より遅い」という答えです"
        ),
    ),
    (
        _upper_bound_only,
        lambda buckets: (
            "順位 q × 全体 が入るバケットの上限を、そのまま返しています。バケットの中では値が一様に散らばっていると"
            "見なして、下限から上限までを直線で補間してください（PromQL の histogram_quantile と同じ）"
        ),
    ),
    (
        _from_zero,
        lambda buckets: (
            "補間を 0 から始めています。バケットの下限（一つ前のバケットの上限）から上限までの間で補間してください"
            "（0 から始めるのは最初のバケットだけです）"
        ),
    ),
    (_always_p95, lambda buckets: "q = 0.95 で計算しています。引数の q を使ってください"),
    (
        _strictly_greater,
        lambda buckets: (
            "累積件数が初めて順位「以上」（>=）になるバケットを探してください。> で探すと、順位がちょうどあるバケットの"
            "累積件数と同じで、次のバケットが空のとき（同じ累積件数が続くとき）に、空のバケットを飛ばした先の下限を"
            "答えます。q = 1 では、どのバケットも見つかりません"
        ),
    ),
    *(
        (
            _rounded_rank(rounding),
            lambda buckets: (
                "順位 q × 全体 を整数に丸めています（「何番目の値」という nearest-rank の考え方）。ヒストグラムには"
                "1 件ずつの値がないので、順位は端数のまま（たとえば 28.5）使い、バケットの中を直線で補間します"
            ),
        )
        for rounding in (math.ceil, math.floor, round)
    ),
    *(
        (
            mistake,
            lambda buckets: (
                "補間の割合は（順位 − 下限までの累積件数）÷（そのバケットに入った件数 = そのバケットの累積件数 − "
                "下限までの累積件数）です。累積件数のまま割っていませんか"
            ),
        )
        for mistake in (_cumulative_share, _divided_by_cumulative)
    ),
)


def _quantile_mistake(got: Any, q: float, buckets: Buckets, expected: float) -> str:
    """The hint for the likely mistake whose answer got is, or a general one."""
    for mistake, hint in QUANTILE_MISTAKES:
        try:
            theirs = mistake(q, buckets)
        except ArithmeticError:
            continue
        if _same(got, theirs) and not _same(theirs, expected):
            return hint(buckets)
    return (
        "順位 = q × 全体（+Inf のバケットの件数）。件数が初めて順位以上になるバケットを探し、その下限から上限までを"
        "（順位 − 下限までの件数）÷（そのバケットの件数）の割合で補間します"
    )


def _check_quantile_case(quantile_from_buckets: Callable[..., Any], q: float, buckets: Buckets, where: str) -> None:
    """One (q, buckets): the learner's answer is PromQL's, or the message names the likely mistake."""
    expected = histogram_quantile(q, buckets)
    got = quantile_from_buckets(q, list(buckets))  # a copy: an answer that sorts or edits its input changes nothing
    assert _same(got, expected), (
        f"{where}で、q={q} の答えは {expected:.6g} のはずが、{got!r} でした。"
        + _quantile_mistake(got, q, buckets, expected)
    )


def _check_empty(quantile_from_buckets: Callable[..., Any]) -> None:
    """No observation: NaN, as PromQL answers, and no exception."""
    for buckets in EMPTY_HISTOGRAMS:
        where = f"観測が 0 件のヒストグラム（{_shown(buckets) or '[]'}）"
        try:
            got = quantile_from_buckets(0.95, list(buckets))
        except NotImplementedError:
            raise
        except Exception as error:  # noqa: BLE001 - a crash is the mistake this case looks for
            raise AssertionError(
                f"{where}で {type(error).__name__}: {error} になりました。"
                "まだリクエストが来ていないサーバーのバケットは空か、件数が全部 0 です。"
                "NaN（math.nan）を返してください（PromQL も NaN を返します）"
            ) from None
        assert _same(got, math.nan), (
            f"{where}で {got!r} を返しました。NaN（math.nan）を返してください（PromQL も NaN を返します）。"
            "0 を返すと「p95 は 0 秒、とても速い」と読めてしまい、遅くなってもアラートが鳴りません"
        )


def _scraped_buckets() -> Buckets:
    """The /predict latency buckets of a real iris FastAPI server after SERVER_REQUESTS predictions."""
    rows = iris_rows(SERVER_REQUESTS, seed=8)
    with serve(iris_fastapi.create_app(_forest(), model_version="v1")) as server, requests.Session() as session:
        for row in rows:
            response = session.post(f"{server.url}/predict", json={"features": row.tolist()}, timeout=30)
            response.raise_for_status()
        text = session.get(f"{server.url}/metrics", timeout=30).text
    buckets = histogram_buckets(parse_metrics(text), LATENCY_METRIC, route="/predict")
    if not buckets or buckets[-1][1] != SERVER_REQUESTS:  # the course's server, not the learner, would be wrong
        raise RuntimeError(f"the server's histogram does not count the {SERVER_REQUESTS} requests sent: {buckets}")
    return buckets


def check_quantile_from_buckets(quantile_from_buckets: Callable[[float, Buckets], Any]) -> None:
    """Exercise 1: quantile_from_buckets(q, buckets) is PromQL's histogram_quantile on cumulative (upper bound, count)
    pairs: on hand-made histograms, on empty ones (NaN), and on a real server's /metrics after real requests."""
    if inside_other_process():  # a cell that calls this check, run again where exercise 2's check loads the cells
        return
    for q, buckets in QUANTILE_CASES:
        _check_quantile_case(quantile_from_buckets, q, buckets, f"バケット [{_shown(buckets)}]")
    _check_empty(quantile_from_buckets)
    buckets = _scraped_buckets()
    for q in SERVER_QUANTILES:
        _check_quantile_case(
            quantile_from_buckets, q, buckets, f"本物の iris API の /metrics（{LATENCY_METRIC}、/predict）のバケット"
        )


# --- exercise 2: a sticky canary ----------------------------------------------------------------------------------

CLIENTS = tuple(f"user-{i}" for i in range(10_000))
CANARY_PERCENTS = (0.1, 0.5, 1, 10, 25, 50, 90)  # the shares checked for size, besides the edges 0 and 100
WHOLE_PERCENTS = tuple(p for p in CANARY_PERCENTS if p == int(p))
STICKY_PERCENT = 25
PROCESS_CLIENTS = CLIENTS[:2_000]
PROCESS_PERCENTS = (10, 50)
# Three new processes, each loading the learner's cells itself: the first two differ only in their str hash(), the
# first and the third in nothing but being started apart (as two workers of one server are)
HASH_SEEDS = ("1", "2", "1")
VERSIONS = ("stable", "canary")


def _differ(first: Sequence[str], second: Sequence[str]) -> int:
    """How many answers differ."""
    return sum(a != b for a, b in zip(first, second, strict=True))


def _check_across_processes(choose_version: Callable[[str, float], Any], here: dict[float, list[str]]) -> None:
    """New processes that load the learner's code themselves give the answers this process gives: with the same str
    hash (no state made when the code loads) and with another (no built-in hash())."""
    calls = [(client, percent) for percent in PROCESS_PERCENTS for client in PROCESS_CLIENTS]
    code = learner_code(choose_version)
    with ThreadPoolExecutor(len(HASH_SEEDS)) as pool:  # side by side: each may import what the function uses
        there = list(pool.map(lambda seed: call_in_new_process(choose_version, calls, seed, code), HASH_SEEDS))
    n = len(PROCESS_CLIENTS)
    for at, percent in enumerate(PROCESS_PERCENTS):
        first, other_hash, started_apart = (answers[at * n : (at + 1) * n] for answers in there)
        differ = _differ(first, started_apart)
        assert differ == 0, (
            f"別々に起動した 2 つのプロセス（PYTHONHASHSEED も同じ）で、{n:,} 人中 {differ:,} 人の答えが違いました"
            f"（canary_percent={percent}）。コードを読み込むたびに変わる値（乱数で作った salt、起動時刻、プロセスの"
            " ID、random で決めて覚えておく辞書…）に頼っていませんか？ サーバーのワーカーはそれぞれ自分でコードを"
            "読み込むので、その値はワーカーごとに違い、同じ利用者の版が、答えるワーカーによって変わります。"
            "client_id と canary_percent だけから決まる答えにしてください（salt を混ぜるなら、決まった文字列を）"
        )
        differ = _differ(first, other_hash)
        assert differ == 0, (
            f"PYTHONHASHSEED が違う 2 つのプロセスで、{n:,} 人中 {differ:,} 人の答えが違いました"
            f"（canary_percent={percent}）。組み込みの hash() は、文字列のハッシュをプロセスごとに変えます"
            "（ハッシュのランダム化）。ワーカーが複数あるサーバーや再起動の前後で、同じ利用者の版が変わってしまいます。"
            "hashlib.sha256(client_id.encode()) のように、どのプロセスでも同じになるハッシュを使ってください"
        )
        differ = _differ(first, here[percent][:n])
        assert differ == 0, (
            f"別のプロセスでは、{n:,} 人中 {differ:,} 人の答えがこのプロセスと違いました"
            f"（canary_percent={percent}）。client_id と canary_percent だけから決まる答えにしてください"
            "（プロセスの ID や起動時刻、呼ばれた回数に頼らない）"
        )


def _share(answers: Sequence[str]) -> float:
    """The percentage of answers that are "canary"."""
    return 100.0 * sum(answer == "canary" for answer in answers) / len(answers)


def _tolerance(percent: float) -> float:
    """How far (percentage points) a share of CLIENTS may stray from percent: 4 binomial standard deviations + 1."""
    n, p = len(CLIENTS), percent / 100.0
    return 100.0 * (4.0 * math.sqrt(n * p * (1.0 - p)) + 1.0) / n


def _near(share: float, percent: float) -> bool:
    """Whether a share of CLIENTS is within the tolerance of percent."""
    return abs(share - percent) <= _tolerance(percent)


def _check_size(answers: dict[float, list[str]]) -> None:
    """The edges exactly, the shares in between within a few standard deviations, with a hint for each mistake."""
    shares = {percent: _share(values) for percent, values in answers.items()}
    assert not all(_near(shares[p], 100 - p) for p in (10, 90)), (
        f"canary_percent=10 で canary が {shares[10]:.1f} %、90 で {shares[90]:.1f} % でした"
        "（100 − canary_percent に近い）。比較の向きが逆です: バケットが canary_percent より小さい人が canary です"
    )
    as_fraction = {p: min(100.0, 100.0 * p) for p in (0.1, 0.5, 10)}  # the shares a comparison with 0-1 gives
    assert not all(_near(shares[p], share) for p, share in as_fraction.items()), (
        f"canary_percent=0.1 で canary が {shares[0.1]:.1f} %、0.5 で {shares[0.5]:.1f} %、10 で {shares[10]:.1f} %"
        " でした。canary_percent は百分率です（10 なら全体の 1 割、0.5 なら 200 人に 1 人）。0〜1 の割合と比べて"
        "いませんか（比べるなら canary_percent / 100 と）"
    )
    leaked = sum(answer == "canary" for answer in answers[0])
    assert leaked == 0, (
        f"canary_percent=0 なのに {leaked} 人が canary でした。0 は全員 stable です"
        "（バケットを 0 から数えて <= で比べると、バケット 0 の人が残ります。< で比べてください）"
    )
    left = sum(answer == "stable" for answer in answers[100])
    assert left == 0, (
        f"canary_percent=100 なのに {left} 人が stable でした。100 は全員 canary です"
        "（バケットを 1 から数えると、最後のバケットの人が残ります。0 から数えて < で比べてください）"
    )
    for percent in (*WHOLE_PERCENTS, *(p for p in CANARY_PERCENTS if p not in WHOLE_PERCENTS)):
        tolerance = _tolerance(percent)
        assert _near(shares[percent], percent), (
            f"canary_percent={percent} で canary が {shares[percent]:.2f} % でした（{len(CLIENTS):,} 人なら "
            f"{max(0.0, percent - tolerance):.2f}〜{percent + tolerance:.2f} % のはず）。"
            + (
                "バケットが一様に散らばっていません。ハッシュを一様なバケット（たとえば 0〜9999）に分けてから、"
                "canary_percent × 100 と比べてください: sha256 の先頭 8 バイトを整数にして % 10000。文字コードの和や、"
                "範囲の狭い値を % で折りたたんだものは、一部のバケットに偏ります"
                if percent in WHOLE_PERCENTS
                else "0.1 や 0.5 のような端数もその割合になるように、バケットを細かく（たとえば 10,000 個に）分けて"
                "ください（100 個なら 1 % 刻み、1 バイトの 256 個なら約 0.4 % 刻みにしかなりません）"
            )
        )


def _check_ramp(answers: dict[float, list[str]]) -> None:
    """Widening the canary keeps everyone who already had it: a client never flips back to stable."""
    shares = sorted(answers)
    for smaller, larger in itertools.pairwise(shares):
        back = sum(a == "canary" and b == "stable" for a, b in zip(answers[smaller], answers[larger], strict=True))
        assert back == 0, (
            f"カナリアを {smaller} から {larger} に広げると、{smaller} で canary だった {back:,} 人が stable に"
            "戻りました。広げるときは、すでに canary の人はそのままで、新しい人が加わるだけにしてください"
            "（client_id のバケットは canary_percent によらず同じ値にし、それを canary_percent と比べる）"
        )


def check_choose_version(choose_version: Callable[[str, float], Any]) -> None:
    """Exercise 2: choose_version(client_id, canary_percent) is "stable" or "canary": the same for a client on every
    call and in new processes that load the learner's code themselves (with the same and another str hash), the asked
    share of clients, 0 and 100 exact, a ramp keeps them."""
    if inside_other_process():  # the cell that calls this check, run again where this check loads the cells
        return
    answers = {p: [choose_version(c, p) for c in CLIENTS] for p in (0, *CANARY_PERCENTS, 100)}
    odd = next((a for values in answers.values() for a in values if a not in VERSIONS), None)
    assert odd is None, f'choose_version は "stable" か "canary" を返してください（{odd!r} がありました）'
    again = [choose_version(c, STICKY_PERCENT) for c in CLIENTS]
    flipped = sum(a != b for a, b in zip(answers[STICKY_PERCENT], again, strict=True))
    assert flipped == 0, (
        f"同じ client_id に 2 回尋ねると、{len(CLIENTS):,} 人中 {flipped:,} 人で答えが変わりました"
        f"（canary_percent={STICKY_PERCENT}）。random.random() のように呼ぶたびに変わる値ではなく、client_id から"
        "決まる値（ハッシュ）で選んでください。同じ利用者が、画面を開き直すたびに新旧のモデルを行き来しないように"
    )
    _check_across_processes(choose_version, answers)
    _check_size(answers)
    _check_ramp(answers)


# --- exercise 3: drifted or not -------------------------------------------------------------------------------------

SEPAL_LENGTH, SEPAL_WIDTH, PETAL_LENGTH, PETAL_WIDTH = 0, 1, 2, 3
FEATURE_NAMES = {
    SEPAL_LENGTH: "がくの長さ",
    SEPAL_WIDTH: "がくの幅",
    PETAL_LENGTH: "花びらの長さ",
    PETAL_WIDTH: "花びらの幅",
}
WINDOW_ROWS = 200
SMALL_WINDOW_ROWS = 50  # where PSI alone alarms on sampling noise (notebook 08's table)
UNSHIFTED_WINDOWS = 50
MAX_FALSE_ALARMS = 2  # of 50 unshifted windows ("nearly all" pass); the rule of both scores has none on these seeds
CLEAR_SHIFTS = ((PETAL_WIDTH, 0.5), (PETAL_LENGTH, 1.0))  # cm added to every live row of that feature
LARGE_ROWS = 20_000
HARMLESS_SIGMA = 0.05  # a twentieth of a standard deviation: nothing a model would notice
# (feature, rows, shift in the reference's standard deviations, seed), found by a search over seeds: each sits where
# a likely mistake answers otherwise than the rule, far from every threshold
BORDER_WINDOWS = (
    (SEPAL_WIDTH, 2_000, 0.25, 3008),  # PSI 0.20 (between 0.1 and 0.25), p 0.001: moved a little, not enough
    (SEPAL_LENGTH, 100, 0.3, 3003),  # PSI 0.67, p 0.029 (between 0.01 and 0.05): could still be chance
    (PETAL_WIDTH, 200, 0.2, 3061),  # PSI 0.49 and p 0.0003: drifted; PSI with the arguments swapped is 0.21
)


def _recorded(values: np.ndarray) -> np.ndarray:
    """Live values recorded like the training data, to 0.1 cm: finer ones would raise PSI without any drift."""
    return values.round(1)


def _drift_windows() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(what, reference, live) per window, all on iris: unshifted, clearly shifted, a harmless shift in a large one,
    and the border cases of BORDER_WINDOWS."""
    reference = iris_split().X_train
    unshifted = f"ずれていない {SMALL_WINDOW_ROWS} 行の窓（{FEATURE_NAMES[PETAL_WIDTH]}、seed="
    windows = [
        (
            f"{unshifted}{seed}）",
            reference[:, PETAL_WIDTH],
            _recorded(iris_rows(SMALL_WINDOW_ROWS, seed=seed)[:, PETAL_WIDTH]),
        )
        for seed in range(UNSHIFTED_WINDOWS)
    ]
    for feature, shift in CLEAR_SHIFTS:
        live = _recorded(iris_rows(WINDOW_ROWS, seed=1000 + feature)[:, feature] + shift)
        windows.append((f"{FEATURE_NAMES[feature]}が {shift} cm ずれた窓", reference[:, feature], live))
    large_reference = iris_rows(LARGE_ROWS, seed=1)[:, PETAL_WIDTH]
    harmless = iris_rows(LARGE_ROWS, seed=2)[:, PETAL_WIDTH] + HARMLESS_SIGMA * large_reference.std()
    windows.append((f"{LARGE_ROWS:,} 行の窓で {HARMLESS_SIGMA} σ だけずれた窓", large_reference, harmless))
    for feature, rows, sigmas, seed in BORDER_WINDOWS:
        live = _recorded(iris_rows(rows, seed=seed)[:, feature] + sigmas * reference[:, feature].std())
        windows.append((f"{FEATURE_NAMES[feature]}が {sigmas} σ ずれた {rows:,} 行の窓", reference[:, feature], live))
    return windows


@dataclass(frozen=True)
class ScoredWindow:
    """A window with the scores a rule may look at: PSI both ways round, the KS p-value and statistic."""

    what: str
    reference: np.ndarray
    live: np.ndarray
    psi: float
    swapped_psi: float  # psi(live, reference): bins at the live window's quantiles
    p_value: float
    statistic: float

    @property
    def drifted(self) -> bool:
        """The rule: PSI > 0.25 and p < 0.01."""
        return self.psi > PSI_THRESHOLD and self.p_value < KS_ALPHA


@lru_cache(maxsize=1)
def _scored_windows() -> tuple[ScoredWindow, ...]:
    """The windows with their scores, computed once per kernel."""
    scored = []
    for what, reference, live in _drift_windows():
        test = ks_2samp(reference, live)
        scores = (psi(reference, live), psi(live, reference), float(test.pvalue), float(test.statistic))
        scored.append(ScoredWindow(what, reference, live, *scores))
    return tuple(scored)


# Rules a learner writes instead of the rule, each with what is wrong with it: the hint is the one whose verdicts are
# the learner's on every window.
DRIFT_MISTAKES: tuple[tuple[Callable[[ScoredWindow], bool], str], ...] = (
    (
        lambda w: w.psi > PSI_THRESHOLD or w.p_value < KS_ALPHA,
        "PSI と KS のどちらか一方だけで「ずれた」にしています（or）。両方がそろったときだけ（and）にしてください",
    ),
    (
        lambda w: w.psi > PSI_THRESHOLD,
        "PSI だけで決めています。ずれていない小さな窓（50 行）では、どの行が窓に入ったかのばらつきだけで PSI が "
        "0.25 を超えます。KS の p 値 < 0.01（そのくらいの差が偶然にはめったに出ないこと）も求めてください",
    ),
    (
        lambda w: w.p_value < KS_ALPHA,
        "KS の p 値だけで決めています。行数が多いと、KS は実害のないわずかなずれでも p 値を小さくします。"
        "PSI > 0.25（分布が実際にどれだけ動いたか）も求めてください",
    ),
    (
        lambda w: w.psi < PSI_THRESHOLD and w.p_value < KS_ALPHA,
        "PSI の不等号の向きが逆です。PSI が 0.25 を超えたら「ずれた」です",
    ),
    (
        lambda w: w.psi > PSI_THRESHOLD and w.p_value > KS_ALPHA,
        "p 値の不等号の向きが逆です。p 値が 0.01 より小さいとき（同じ分布からはめったに起きない差のとき）が"
        "「ずれた」です",
    ),
    (
        lambda w: w.psi < PSI_THRESHOLD and w.p_value > KS_ALPHA,
        "PSI と p 値の不等号が両方とも逆です（PSI > 0.25 かつ p 値 < 0.01 で「ずれた」）",
    ),
    (
        lambda w: w.psi > 0.1 and w.p_value < KS_ALPHA,
        "PSI のしきい値が 0.1 になっています。0.1〜0.25 は「少し動いた、様子を見る」で、アラートにするのは 0.25 を"
        "超えたときです。0.1 では、気にしなくてよい小さな動きでも鳴ります",
    ),
    (
        lambda w: w.psi > PSI_THRESHOLD and w.p_value < 0.05,
        "KS の有意水準が 0.05 になっています。この講座の規則は p 値 < 0.01 です。特徴量ごと、窓ごとに何度も検定する"
        "ので、0.05 では、ずれていなくてもおよそ 20 回に 1 回は偶然「ずれた」になります",
    ),
    (
        lambda w: w.psi > 0.1 and w.p_value < 0.05,
        "しきい値が PSI 0.1、p 値 0.05 になっています。規則は PSI > 0.25 かつ p 値 < 0.01 です",
    ),
    (
        lambda w: w.swapped_psi > PSI_THRESHOLD and w.p_value < KS_ALPHA,
        "psi の引数が逆です: psi(reference, live)。PSI は最初の引数（参照）の分位点でビンを切るので、入れ替えると"
        "値が変わります（KS 検定は入れ替えても同じです）",
    ),
    (
        lambda w: w.psi > PSI_THRESHOLD and w.statistic < KS_ALPHA,
        "KS 検定の統計量（statistic、分布の差の大きさ）を 0.01 と比べています。比べるのは p 値"
        "（ks_2samp(reference, live).pvalue）です",
    ),
)


def _drift_mistake(verdicts: list[bool]) -> str:
    """The hint for the known mistake whose verdicts on every window are the learner's, or a general one."""
    windows = _scored_windows()
    for rule, hint in DRIFT_MISTAKES:
        if [rule(window) for window in windows] == verdicts:
            return hint
    return "PSI > 0.25 かつ KS の p 値 < 0.01 のときだけ True にしてください"


def check_window_drifted(window_drifted: Callable[[np.ndarray, np.ndarray], Any]) -> None:
    """Exercise 3: window_drifted(reference, live) is True only when PSI > 0.25 and the KS p-value < 0.01: nearly no
    unshifted iris window, every clearly shifted one, not a harmless shift in a large window, and the rule exactly
    where a threshold of 0.1 or 0.05, or the arguments swapped, answer otherwise."""
    if inside_other_process():  # a cell that calls this check, run again where exercise 2's check loads the cells
        return
    windows = _scored_windows()
    verdicts = []
    for window in windows:
        verdict = window_drifted(window.reference.copy(), window.live.copy())
        assert isinstance(verdict, (bool, np.bool_)), (
            f"True か False を返してください（{window.what}で {type(verdict).__name__} の {verdict!r} が返りました）"
        )
        verdicts.append(bool(verdict))
    hint = _drift_mistake(verdicts)
    alarms = [window for window, verdict in zip(windows[:UNSHIFTED_WINDOWS], verdicts, strict=False) if verdict]
    assert len(alarms) <= MAX_FALSE_ALARMS, (
        f"ずれていない窓 {UNSHIFTED_WINDOWS} 個のうち {len(alarms)} 個で「ずれた」と答えました"
        f"（許すのは {MAX_FALSE_ALARMS} 個まで。例: {alarms[0].what}で PSI = {alarms[0].psi:.3f}、"
        f"KS の p 値 = {alarms[0].p_value:.3g}）。{hint}"
    )
    for window, verdict in zip(windows[UNSHIFTED_WINDOWS:], verdicts[UNSHIFTED_WINDOWS:], strict=True):
        assert verdict == window.drifted, (
            f"{window.what}で {verdict} と答えました（PSI = {window.psi:.3f}、KS の p 値 = {window.p_value:.3g} なので"
            f" {window.drifted} のはず）。{hint}"
        )
