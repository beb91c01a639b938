"""Checks for the exercises of notebook 08 (monitoring and safe releases): a quantile read from a real server's
latency histogram, a canary choice that is the same in every process, and a drift verdict on iris windows.

Each check compares the learner's answer with the course's tested version (course_lib.monitoring, releases, drift)
and, when they differ, names the likely mistake by recomputing what that mistake would have answered.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import cloudpickle
import numpy as np
import requests
from scipy.stats import ks_2samp

from course_lib.apps import iris_fastapi
from course_lib.data import iris_rows, iris_split
from course_lib.drift import KS_ALPHA, PSI_THRESHOLD, psi
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
QUANTILE_CASES = (
    (0.5, LATENCY),  # first: the rank lands in a middle bucket, where each mistake answers its own value
    (0.95, LATENCY),
    (0.99, LATENCY),
    (0.95, SLOW_TAIL),
    (0.3, FAST),  # the first bucket: its lower bound is 0
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
CANARY_PERCENTS = (0.5, 1, 10, 25, 50, 90)  # the shares checked for size, besides the edges 0 and 100
STICKY_PERCENT = 25
PROCESS_CLIENTS = CLIENTS[:2_000]
PROCESS_PERCENTS = (10, 50)
HASH_SEEDS = ("1", "2")  # two interpreters whose str hash() differ
SUBPROCESS_LIMIT_S = 120  # only against a hang: the other process answers in about a second
VERSIONS = ("stable", "canary")
_OTHER_PROCESS = """
import json, sys
import cloudpickle
choose_version, clients, percents = cloudpickle.loads(sys.stdin.buffer.read())
answers = {str(p): [str(choose_version(c, p)) for c in clients] for p in percents}
print("\\n" + json.dumps(answers))
"""


def _pickled(choose_version: Callable[[str, float], Any]) -> bytes:
    """The function with the clients and shares to ask, as bytes another process can load (by value from a notebook)."""
    try:
        return cloudpickle.dumps((choose_version, PROCESS_CLIENTS, PROCESS_PERCENTS))
    except Exception as error:  # noqa: BLE001 - anything that cannot travel to another process
        raise AssertionError(
            f"choose_version を別のプロセスに送れませんでした（{type(error).__name__}: {error}）。"
            "ロックやファイルのような、プロセスをまたげないものを使わないでください"
        ) from None


def _answers_in_another_process(payload: bytes, hash_seed: str) -> dict[str, list[str]]:
    """The answers for PROCESS_CLIENTS computed by a new Python process with this PYTHONHASHSEED."""
    done = subprocess.run(
        [sys.executable, "-c", _OTHER_PROCESS],
        input=payload,
        capture_output=True,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
        timeout=SUBPROCESS_LIMIT_S,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or ["(no message)"])[-1]
        raise AssertionError(f"別のプロセスで choose_version を呼ぶと失敗しました: {last}")
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def _check_across_processes(choose_version: Callable[[str, float], Any], here: dict[float, list[str]]) -> None:
    """Two processes with different str hashes give the answers this process gives."""
    payload = _pickled(choose_version)
    with ThreadPoolExecutor(len(HASH_SEEDS)) as pool:  # side by side: each may import what the function uses
        there = list(pool.map(lambda seed: _answers_in_another_process(payload, seed), HASH_SEEDS))
    for percent in PROCESS_PERCENTS:
        first, second = (answers[str(percent)] for answers in there)
        differ = sum(a != b for a, b in zip(first, second, strict=True))
        assert differ == 0, (
            f"PYTHONHASHSEED が違う 2 つのプロセスで、{len(first):,} 人中 {differ:,} 人の答えが違いました"
            f"（canary_percent={percent}）。組み込みの hash() は、文字列のハッシュをプロセスごとに変えます"
            "（ハッシュのランダム化）。ワーカーが複数あるサーバーや再起動の前後で、同じ利用者の版が変わってしまいます。"
            "hashlib.sha256(client_id.encode()) のように、どのプロセスでも同じになるハッシュを使ってください"
        )
        mine = here[percent][: len(PROCESS_CLIENTS)]
        differ = sum(a != b for a, b in zip(first, mine, strict=True))
        assert differ == 0, (
            f"別のプロセスでは、{len(first):,} 人中 {differ:,} 人の答えがこのプロセスと違いました"
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


def _check_size(answers: dict[float, list[str]]) -> None:
    """The edges exactly, the shares in between within a few standard deviations, with a hint for each mistake."""
    reversed_ = all(abs(_share(answers[p]) - (100 - p)) <= _tolerance(p) for p in (10, 90))
    assert not reversed_, (
        f"canary_percent=10 で canary が {_share(answers[10]):.1f} %、90 で {_share(answers[90]):.1f} % でした"
        "（100 − canary_percent に近い）。比較の向きが逆です: バケットが canary_percent より小さい人が canary です"
    )
    for percent in (0.5, 10):
        share = _share(answers[percent])
        as_fraction = min(100.0, 100.0 * percent)  # the share a comparison with a 0-1 fraction gives
        assert abs(share - as_fraction) > _tolerance(as_fraction), (
            f"canary_percent={percent} で canary が {share:.1f} % でした。canary_percent は百分率です（10 なら全体の "
            "1 割、0.5 なら 200 人に 1 人）。0〜1 の割合と比べていませんか（比べるなら canary_percent / 100 と）"
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
    for percent in CANARY_PERCENTS:
        share, tolerance = _share(answers[percent]), _tolerance(percent)
        assert abs(share - percent) <= tolerance, (
            f"canary_percent={percent} で canary が {share:.2f} % でした（{len(CLIENTS):,} 人なら "
            f"{max(0.0, percent - tolerance):.2f}〜{percent + tolerance:.2f} % のはず）。"
            + (
                "0.5 のような端数もその割合になるように、バケットを細かく（たとえば 10,000 個に）分けてください"
                if percent != int(percent)
                else "ハッシュを一様なバケット（たとえば 0〜9999）に分けてから、canary_percent × 100 と比べてください"
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
    call and in every process (other str hashes), the asked share of clients, 0 and 100 exact, a ramp keeps them."""
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

PETAL_LENGTH, PETAL_WIDTH = 2, 3
FEATURE_NAMES = {PETAL_LENGTH: "花びらの長さ", PETAL_WIDTH: "花びらの幅"}
WINDOW_ROWS = 200
UNSHIFTED_WINDOWS = 50
MAX_FALSE_ALARMS = 2  # of 50 unshifted windows ("nearly all" pass); the rule of both scores has none on these seeds
CLEAR_SHIFTS = ((PETAL_WIDTH, 0.5), (PETAL_LENGTH, 1.0))  # cm added to every live row of that feature
LARGE_ROWS = 20_000
HARMLESS_SIGMA = 0.05  # a twentieth of a standard deviation: nothing a model would notice


def _drift_windows() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(what, reference, live) per window, all on iris: unshifted, clearly shifted, a harmless shift in a large one."""
    reference = iris_split().X_train
    unshifted = f"ずれていない {WINDOW_ROWS} 行の窓（{FEATURE_NAMES[PETAL_WIDTH]}、seed="
    windows = [
        (f"{unshifted}{seed}）", reference[:, PETAL_WIDTH], iris_rows(WINDOW_ROWS, seed=seed)[:, PETAL_WIDTH])
        for seed in range(UNSHIFTED_WINDOWS)
    ]
    for feature, shift in CLEAR_SHIFTS:
        live = iris_rows(WINDOW_ROWS, seed=1000 + feature)[:, feature] + shift
        windows.append((f"{FEATURE_NAMES[feature]}が {shift} cm ずれた窓", reference[:, feature], live))
    large_reference = iris_rows(LARGE_ROWS, seed=1)[:, PETAL_WIDTH]
    harmless = iris_rows(LARGE_ROWS, seed=2)[:, PETAL_WIDTH] + HARMLESS_SIGMA * large_reference.std()
    windows.append((f"{LARGE_ROWS:,} 行の窓で {HARMLESS_SIGMA} σ だけずれた窓", large_reference, harmless))
    return windows


@lru_cache(maxsize=1)
def _scored_windows() -> tuple[tuple[str, np.ndarray, np.ndarray, float, float], ...]:
    """The windows with their PSI and KS p-value, computed once per kernel."""
    return tuple(
        (what, reference, live, psi(reference, live), float(ks_2samp(reference, live).pvalue))
        for what, reference, live in _drift_windows()
    )


# What a rule answers in each quadrant (PSI over its threshold?, p under alpha?) → the mistake it is.
DRIFT_RULES: dict[tuple[bool, bool, bool, bool], str] = {
    # (high PSI & low p, high PSI & high p, low PSI & low p, low PSI & high p)
    (True, True, True, False): (
        "PSI と KS のどちらか一方だけで「ずれた」にしています（or）。両方がそろったときだけ（and）にしてください"
    ),
    (True, True, False, False): (
        "PSI だけで決めています。花びらの幅は 0.1 cm 刻みで測られて同じ値が多く、参照の分位点で切ったビンが偏るため、"
        "ずれていない小さな窓でも PSI が 0.25 を超えます。KS の p 値 < 0.01 も求めてください"
    ),
    (True, False, True, False): (
        "KS の p 値だけで決めています。行数が多いと、KS は実害のないわずかなずれでも p 値を小さくします。"
        "PSI > 0.25（分布が実際にどれだけ動いたか）も求めてください"
    ),
    (False, False, True, False): "PSI の不等号の向きが逆です。PSI が 0.25 を超えたら「ずれた」です",
    (False, True, False, False): (
        "p 値の不等号の向きが逆です。p 値が 0.01 より小さいとき（同じ分布からはめったに起きない差のとき）が"
        "「ずれた」です"
    ),
    (False, False, False, True): "PSI と p 値の不等号が両方とも逆です（PSI > 0.25 かつ p 値 < 0.01 で「ずれた」）",
}


def _rule_of(verdicts: list[tuple[bool, bool, bool]]) -> str:
    """The hint for the rule the verdicts follow, when each quadrant got one answer and it is a known mistake."""
    table = {}
    for quadrant in ((True, True), (True, False), (False, True), (False, False)):
        seen = {verdict for high_psi, low_p, verdict in verdicts if (high_psi, low_p) == quadrant}
        if len(seen) != 1:
            return ""
        table[quadrant] = seen.pop()
    return DRIFT_RULES.get((table[True, True], table[True, False], table[False, True], table[False, False]), "")


def check_window_drifted(window_drifted: Callable[[np.ndarray, np.ndarray], Any]) -> None:
    """Exercise 3: window_drifted(reference, live) is True only when PSI > 0.25 and the KS p-value < 0.01: nearly no
    unshifted iris window, every clearly shifted one, and not a harmless shift in a large window."""
    results = []
    for what, reference, live, score, p_value in _scored_windows():
        verdict = window_drifted(reference.copy(), live.copy())
        assert isinstance(verdict, (bool, np.bool_)), (
            f"True か False を返してください（{what}で {type(verdict).__name__} の {verdict!r} が返りました）"
        )
        results.append((what, score, p_value, bool(verdict)))
    hint = _rule_of([(score > PSI_THRESHOLD, p < KS_ALPHA, verdict) for _, score, p, verdict in results])
    hint = hint or "PSI > 0.25 かつ KS の p 値 < 0.01 のときだけ True にしてください"
    alarms = [(what, score, p) for what, score, p, verdict in results[:UNSHIFTED_WINDOWS] if verdict]
    assert len(alarms) <= MAX_FALSE_ALARMS, (
        f"ずれていない窓 {UNSHIFTED_WINDOWS} 個のうち {len(alarms)} 個で「ずれた」と答えました"
        f"（許すのは {MAX_FALSE_ALARMS} 個まで。例: {alarms[0][0]}で PSI = {alarms[0][1]:.3f}、"
        f"KS の p 値 = {alarms[0][2]:.3g}）。{hint}"
    )
    for what, score, p_value, verdict in results[UNSHIFTED_WINDOWS:]:
        expected = score > PSI_THRESHOLD and p_value < KS_ALPHA
        assert verdict == expected, (
            f"{what}で {verdict} と答えました（PSI = {score:.3f}、KS の p 値 = {p_value:.3g} なので"
            f" {expected} のはず）。{hint}"
        )
