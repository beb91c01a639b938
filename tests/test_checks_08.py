"""The notebook-08 exercise checks accept the solutions notebook's answers (run from solutions/08 itself, so the test
and the notebook cannot drift apart), reject each likely wrong answer with its own Japanese message, and report
unfinished ones. Exercise 1's check scrapes a real server; exercise 2's runs the answer in three new processes that
load the learner's cells themselves, which these tests write as notebook cells run the way IPython runs them."""

from __future__ import annotations

import hashlib
import json
import math
import random
import sys
import threading
from collections.abc import Callable
from typing import Any

import cloudpickle
import nbformat
import pytest
from helpers import notebook_cells, solution_namespace
from nbclient import NotebookClient
from scipy.stats import ks_2samp

from course_lib.drift import feature_drift, psi
from course_lib.exercises import checks_08
from course_lib.exercises.checking import RECORD_ENV
from course_lib.exercises.elsewhere import learner_code
from course_lib.monitoring import bucket_of_rank, histogram_quantile
from course_lib.releases import BUCKETS, canary_bucket

# Wrong answers written as lambdas here have no notebook cell: check_choose_version sends them to other processes
# with cloudpickle, and this module cannot be imported there, so they travel by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SOLUTION_NAMES = ("quantile_from_buckets", "choose_version", "window_drifted")


@pytest.fixture(scope="module")
def solution() -> dict[str, Any]:
    """The solutions notebook's definitions."""
    return solution_namespace("08", SOLUTION_NAMES)


def not_implemented(*args, **kwargs):
    raise NotImplementedError()


def test_unfinished_exercises_are_reported_as_not_implemented():
    for call in (
        lambda: checks_08.check_quantile_from_buckets(not_implemented),
        lambda: checks_08.check_choose_version(not_implemented),
        lambda: checks_08.check_window_drifted(not_implemented),
    ):
        with pytest.raises(NotImplementedError, match="^$"):
            call()


def test_every_exercise_accepts_the_solution(solution):
    checks_08.check_quantile_from_buckets(solution["quantile_from_buckets"])
    checks_08.check_choose_version(solution["choose_version"])
    checks_08.check_window_drifted(solution["window_drifted"])


# Exercise 1: a quantile from a latency histogram


def empty_is_nan(wrong: Callable[[float, list], float]) -> Callable[[float, list], float]:
    """A wrong answer that still gets the empty histogram right, so its own mistake is what the check meets."""
    return lambda q, buckets: math.nan if not buckets or buckets[-1][1] == 0 else wrong(q, buckets)


def per_bucket_counts(q: float, buckets: list[tuple[float, float]], inf_at_the_top: bool = False) -> float:
    """Reads the cumulative counts as counts per bucket: the total is their sum, and they are accumulated again.
    Such a reading nearly always lands in +Inf at high q: the answer there is PromQL's, or +Inf if asked."""
    total = sum(count for _, count in buckets)
    seen, lower = 0.0, 0.0
    for bound, count in buckets:
        if seen + count >= q * total:
            if math.isinf(bound):
                return bound if inf_at_the_top else lower
            return lower + (bound - lower) * (q * total - seen) / count
        seen, lower = seen + count, bound
    return lower


def upper_bound(q: float, buckets: list[tuple[float, float]]) -> float:
    """The bucket's upper bound, without interpolation (PromQL's answer for +Inf kept)."""
    rank, lower, _, bound, _ = bucket_of_rank(q, buckets)
    return lower if math.isinf(bound) else bound


def from_zero(q: float, buckets: list[tuple[float, float]]) -> float:
    """Interpolates from 0 up to the bucket's upper bound (PromQL's answer for +Inf kept)."""
    rank, lower, lower_count, bound, count = bucket_of_rank(q, buckets)
    return lower if math.isinf(bound) else bound * (rank - lower_count) / (count - lower_count)


def infinite_top(q: float, buckets: list[tuple[float, float]]) -> float:
    """Right, except that a rank in the +Inf bucket answers +Inf."""
    rank, lower, lower_count, bound, count = bucket_of_rank(q, buckets)
    return bound if math.isinf(bound) else lower + (bound - lower) * (rank - lower_count) / (count - lower_count)


def no_empty_guard(q: float, buckets: list[tuple[float, float]]) -> float:
    """Right for every histogram with observations; divides by zero on an empty one."""
    rank, lower, lower_count, bound, count = bucket_of_rank(q, buckets)
    share = (rank - lower_count) / (count - lower_count)  # 0 / 0 when nothing was observed
    return lower if math.isinf(bound) else lower + (bound - lower) * share


def zero_when_empty(q: float, buckets: list[tuple[float, float]]) -> float:
    """Right for every histogram with observations; 0.0 for an empty one."""
    return 0.0 if not buckets or buckets[-1][1] == 0 else histogram_quantile(q, buckets)


def fitted_to_the_examples(q: float, buckets: list[tuple[float, float]]) -> float:
    """Answers only the check's hand-made histograms (learned by heart): the real server's must find it out."""
    known = {(q, tuple(b)): histogram_quantile(q, b) for q, b in checks_08.QUANTILE_CASES}
    return math.nan if not buckets or buckets[-1][1] == 0 else known.get((q, tuple(buckets)), 0.0123)


def strictly_greater(q: float, buckets: list[tuple[float, float]]) -> float:
    """The solution with > where PromQL's search has >=: past the last bucket it answers what its loop left."""
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count > rank:
            if math.isinf(bound):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def nearest_rank(rounding: Callable[[float], float]) -> Callable[[float, list], float]:
    """PromQL's interpolation from a rank rounded to a whole observation."""
    return lambda q, buckets: histogram_quantile(rounding(q * buckets[-1][1]) / buckets[-1][1], buckets)


def cumulative_share(q: float, buckets: list[tuple[float, float]], subtract_below: bool) -> float:
    """Interpolates with the bucket's cumulative count as the denominator (and, unless subtract_below, the rank)."""
    rank, lower, lower_count, bound, count = bucket_of_rank(q, buckets)
    below = lower_count if subtract_below else 0.0
    return lower if math.isinf(bound) else lower + (bound - lower) * (rank - below) / count


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (empty_is_nan(strictly_greater), r"バケット \[le=0\.01: 10, le=0\.025: 40, le=0\.05: 40, .*「以上」（>=）"),
        (
            empty_is_nan(nearest_rank(math.ceil)),
            r"q=0\.95 の答えは 0\.35 のはずが、0\.4 でした。順位 q × 全体 を整数に",
        ),
        (empty_is_nan(nearest_rank(math.floor)), "順位 q × 全体 を整数に丸めています"),
        (empty_is_nan(nearest_rank(round)), "順位 q × 全体 を整数に丸めています"),
        (empty_is_nan(lambda q, b: cumulative_share(q, b, subtract_below=False)), "累積件数のまま割って"),
        (empty_is_nan(lambda q, b: cumulative_share(q, b, subtract_below=True)), "累積件数のまま割って"),
    ],
    ids=[
        "greater-than",
        "nearest-rank-ceil",
        "nearest-rank-floor",
        "nearest-rank-round",
        "cumulative",
        "cumulative-below",
    ],
)
def test_quantile_names_the_search_and_rank_mistakes(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks_08.check_quantile_from_buckets(wrong)


def test_a_search_with_greater_than_fails_at_q_1_too():
    """Besides the empty bucket after the rank: at q = 1 no count is > every observation, and the loop runs off."""
    with pytest.raises(AssertionError, match=r"q=1\.0 の答えは 0\.25 のはずが、inf でした。.*「以上」（>=）"):
        checks_08._check_quantile_case(strictly_greater, 1.0, checks_08.LATENCY, "")


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (empty_is_nan(per_bucket_counts), "件数を足し合わせてはいけません"),
        (empty_is_nan(lambda q, b: per_bucket_counts(q, b, inf_at_the_top=True)), "件数を足し合わせてはいけません"),
        (empty_is_nan(upper_bound), "直線で補間"),
        (empty_is_nan(from_zero), "補間を 0 から始めています"),
        (empty_is_nan(infinite_top), "有限の最大の上限（ここでは 0.5）"),
        (empty_is_nan(lambda q, buckets: histogram_quantile(0.95, buckets)), "引数の q を使って"),
        (no_empty_guard, r"観測が 0 件のヒストグラム（\[\]）で IndexError"),
        (lambda q, b: math.nan if not b else no_empty_guard(q, b), "（le=0.01: 0, .*）で ZeroDivisionError"),
        (zero_when_empty, "とても速い"),
        (fitted_to_the_examples, r"本物の iris API の /metrics（http_request_duration_seconds、/predict）のバケットで"),
    ],
    ids=[
        "per-bucket-counts",
        "per-bucket-counts-inf-at-the-top",
        "upper-bound",
        "from-zero",
        "infinite-top",
        "always-p95",
        "crash-without-buckets",
        "crash-on-zero-counts",
        "zero-when-empty",
        "fitted-to-the-examples",
    ],
)
def test_quantile_rejects_wrong_answers(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks_08.check_quantile_from_buckets(wrong)


# Exercise 2: a sticky canary


def sha_bucket(client_id: str, buckets: int = BUCKETS) -> int:
    """A stable bucket of a client id (as the solution computes it)."""
    return int.from_bytes(hashlib.sha256(client_id.encode()).digest()[:8], "big") % buckets


def reshuffled_per_share(client_id: str, canary_percent: float) -> str:
    """Sticky for one share, but each share hashes the client anew: widening sends some canary clients back."""
    bucket = sha_bucket(f"{client_id}:{canary_percent}")
    return "canary" if bucket < canary_percent * 100 else "stable"


def modulo_bias(client_id: str, canary_percent: float) -> str:
    """Four hex digits (65,536 values) folded onto 10,000 buckets: the low buckets get one value more, so the shares
    come out too large."""
    bucket = int(hashlib.sha256(client_id.encode()).hexdigest()[:4], 16) % 10_000
    return "canary" if bucket < canary_percent * 100 else "stable"


LOCK = threading.Lock()


def holds_a_lock(client_id: str, canary_percent: float) -> str:
    """A right answer that uses a lock: a lock cannot travel to another process."""
    with LOCK:
        return "canary" if sha_bucket(client_id) < canary_percent * 100 else "stable"


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (lambda c, p: "canary" if random.random() * 100 < p else "stable", "2 回尋ねると"),
        (lambda c, p: "canary" if hash(c) % BUCKETS < p * 100 else "stable", "PYTHONHASHSEED が違う 2 つのプロセス"),
        (lambda c, p: "canary" if sha_bucket(c) / BUCKETS < p else "stable", "百分率です"),
        (lambda c, p: "canary" if sha_bucket(c) >= p * 100 else "stable", "比較の向きが逆"),
        (lambda c, p: "canary" if sha_bucket(c, 100) <= p else "stable", "0 は全員 stable"),
        (lambda c, p: "canary" if sha_bucket(c, 100) + 1 < p else "stable", "100 は全員 canary"),
        (lambda c, p: "canary" if sha_bucket(c, 100) < p else "stable", "バケットを細かく"),
        (modulo_bias, "一様なバケット（たとえば 0〜9999）"),
        (reshuffled_per_share, "stable に戻りました"),
        (lambda c, p: sha_bucket(c) < p * 100, '"stable" か "canary" を返して'),
        (holds_a_lock, "別のプロセスに送れませんでした"),
    ],
    ids=[
        "random",
        "builtin-hash",
        "percent-as-fraction",
        "reversed",
        "zero-leaks",
        "hundred-leaks",
        "whole-percents-only",
        "modulo-bias",
        "reshuffled-per-share",
        "returns-bool",
        "not-picklable",
    ],
)
def test_choose_version_rejects_wrong_answers(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks_08.check_choose_version(wrong)


SETUP = "import hashlib\nimport os\nimport random\nimport time\n"  # the exercise's setup cell, and a few more


def choose_from_cells(*cells: str) -> Callable[[str, float], str]:
    """choose_version as the last of these notebook cells (after SETUP) defines it."""
    return notebook_cells(SETUP, *cells)["choose_version"]


SALTED = """
SALT = os.urandom(8).hex()  # a new salt each time the cell runs: in each worker that loads it


def choose_version(client_id, canary_percent):
    digest = hashlib.sha256(f"{SALT}/{client_id}".encode()).digest()
    return "canary" if int.from_bytes(digest[:8], "big") % 10_000 < canary_percent * 100 else "stable"
"""
REMEMBERED = """
assigned = {}  # a sticky choice per client, but made by chance and kept in this process only


def choose_version(client_id, canary_percent):
    if client_id not in assigned:
        assigned[client_id] = random.random() * 100
    return "canary" if assigned[client_id] < canary_percent else "stable"
"""
SOLUTION_BODY = """
def choose_version(client_id, canary_percent):
    digest = hashlib.sha256(f"{SALT}{client_id}".encode()).digest()
    return "canary" if int.from_bytes(digest[:8], "big") % 10_000 < canary_percent * 100 else "stable"
"""


@pytest.mark.parametrize(
    "cells",
    [
        pytest.param((SALTED,), id="random-salt-in-the-cell"),
        pytest.param(('SALT = f"{time.time_ns()}/"', SOLUTION_BODY), id="time-salt-in-another-cell"),
        pytest.param(("SALT = os.getpid()", SOLUTION_BODY), id="process-id-in-another-cell"),
        pytest.param((REMEMBERED,), id="remembered-random-choices"),
    ],
)
def test_choose_version_rejects_state_made_when_the_code_loads(cells):
    """Sent by value, the salt or the filled dict travels along and every process agrees; two workers that each load
    the code do not, and neither do the check's processes, which run the cells again."""
    with pytest.raises(AssertionError, match="別々に起動した 2 つのプロセス（PYTHONHASHSEED も同じ）"):
        checks_08.check_choose_version(choose_from_cells(*cells))


@pytest.mark.parametrize(
    "cells",
    [
        pytest.param(('SALT = "release-2/"', SOLUTION_BODY), id="fixed-salt-in-another-cell"),
        pytest.param(("random.seed(7)\nSALT = random.random()", SOLUTION_BODY), id="seeded-salt"),
        pytest.param(
            (
                "def bucket_of(client_id):\n    return int(hashlib.md5(client_id.encode()).hexdigest(), 16) % 10_000\n",
                "def choose_version(client_id, canary_percent):\n"
                '    return "canary" if bucket_of(client_id) < canary_percent * 100 else "stable"\n',
            ),
            id="helper-in-another-cell",
        ),
    ],
)
def test_choose_version_accepts_state_that_is_the_same_everywhere(cells):
    """A fixed or seeded salt and a helper from another cell are the same in every process."""
    checks_08.check_choose_version(choose_from_cells(*cells))


def test_a_cell_that_also_runs_the_check_is_run_again_where_the_check_does_nothing(tmp_path, monkeypatch):
    """The check's processes run the cell again, check call included: there the check returns at once instead of
    starting processes of its own, and writes nothing into the record a course tool reads (`progress`, `grade`): the
    record holds the one result of this process, a pass."""
    record = tmp_path / "checks.jsonl"
    monkeypatch.setenv(RECORD_ENV, str(record))
    cell = f'SALT = ""\n{SOLUTION_BODY}\ncheck("canary", lambda: checks_08.check_choose_version(choose_version))\n'
    notebook_cells(SETUP, "from course_lib.exercises import check, checks_08", cell)
    assert [json.loads(line)["status"] for line in record.read_text().splitlines()] == ["pass"]


def test_the_builtin_hash_in_a_notebook_cell_is_named_as_such():
    cell = SOLUTION_BODY.replace('hashlib.sha256(f"{SALT}{client_id}".encode()).digest()', "hash(client_id)")
    cell = cell.replace('int.from_bytes(digest[:8], "big")', "digest")
    with pytest.raises(AssertionError, match="PYTHONHASHSEED が違う 2 つのプロセス"):
        checks_08.check_choose_version(choose_from_cells(cell))


def test_learner_code_runs_the_cells_that_define_what_the_function_uses_and_sends_the_rest():
    namespace = notebook_cells(
        SETUP, "from course_lib.releases import BUCKETS", 'SALT = "a"\nprint(SALT)', SOLUTION_BODY
    )
    code = learner_code(namespace["choose_version"])
    assert code is not None and code.name == "choose_version"
    assert code.source == 'SALT = "a"\nprint(SALT)\n' + SOLUTION_BODY
    assert set(code.names) == {"hashlib"}  # a module: sent, its import cell is not run again


def test_a_function_without_a_cell_is_sent_by_value():
    assert learner_code(lambda c, p: "stable") is None  # defined in this module: cloudpickle sends it


def test_a_salted_answer_is_rejected_in_a_real_kernel_and_a_fixed_one_accepted(tmp_path):
    """The same in a real IPython kernel: its cells reach the check through linecache and In, as written above."""
    check = "check('canary', lambda: checks_08.check_choose_version(choose_version))"
    cells = [
        SETUP + "from course_lib.exercises import check, checks_08",
        SALTED,
        check,
        'SALT = "release-2/"',
        SOLUTION_BODY,
        check,
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    salted, fixed = ("".join(o.get("text", "") for o in notebook.cells[i].outputs) for i in (2, 5))
    assert salted.startswith("❌ canary: 不合格 — 別々に起動した 2 つのプロセス"), salted
    assert fixed == "✅ canary: 合格\n", fixed


def one_byte(client_id: str, canary_percent: float) -> str:
    """A sha256 byte scaled to percent: 256 buckets, shares in steps of about 0.4 %."""
    return "canary" if hashlib.sha256(client_id.encode()).digest()[0] * 100 / 256 < canary_percent else "stable"


def one_byte_folded(client_id: str, canary_percent: float) -> str:
    """A sha256 byte folded onto 100 buckets: buckets 0-55 get three values, 56-99 two."""
    return "canary" if hashlib.sha256(client_id.encode()).digest()[0] % 100 < canary_percent else "stable"


def byte_sum(client_id: str, canary_percent: float) -> str:
    """A "hash" that adds the characters' codes: user-0 … user-9999 give sums between about 540 and 700."""
    return "canary" if sum(client_id.encode()) % 10_000 < canary_percent * 100 else "stable"


def byte_sum_percent(client_id: str, canary_percent: float) -> str:
    """The character sum folded onto 100 buckets: a few dozen of them hold everybody."""
    return "canary" if sum(client_id.encode()) % 100 < canary_percent else "stable"


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (one_byte, r"canary_percent=0\.1 で canary が 0\.\d\d %.*1 バイトの 256 個"),
        (one_byte_folded, "バケットが一様に散らばっていません"),
        (byte_sum, "バケットが一様に散らばっていません"),
        (byte_sum_percent, "バケットが一様に散らばっていません"),
    ],
    ids=["one-byte", "one-byte-folded", "byte-sum", "byte-sum-percent"],
)
def test_choose_version_names_coarse_and_uneven_buckets(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks_08.check_choose_version(wrong)


def test_builtin_hash_is_caught_even_when_the_environment_fixes_the_hash_seed(monkeypatch):
    """With PYTHONHASHSEED set for every process (some CI systems do), hash() agrees across processes: the check sets
    a different seed for each of its processes itself."""
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    with pytest.raises(AssertionError, match="PYTHONHASHSEED が違う 2 つのプロセス"):
        checks_08.check_choose_version(lambda c, p: "canary" if hash(c) % BUCKETS < p * 100 else "stable")


def test_the_lesson_s_canary_bucket_passes_the_learner_s_check():
    """The lesson's ReleaseRouter chooses with course_lib.releases.canary_bucket: it must be a right answer too."""
    checks_08.check_choose_version(lambda c, p: "canary" if canary_bucket(c) < p * BUCKETS / 100 else "stable")


def test_another_stable_hash_passes_too():
    """The check asks for properties, not for the course's hash: md5 buckets are a right answer as well."""
    checks_08.check_choose_version(
        lambda c, p: "canary" if int(hashlib.md5(c.encode()).hexdigest(), 16) % 10_000 < p * 100 else "stable"
    )


# Exercise 3: drifted or not


def scores(reference: Any, live: Any) -> tuple[float, float]:
    """PSI and the KS p-value, as a learner computes them."""
    return psi(reference, live), ks_2samp(reference, live).pvalue


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (lambda r, live: (s := scores(r, live))[0] > 0.25 or s[1] < 0.01, "どちらか一方だけ"),
        (lambda r, live: scores(r, live)[0] > 0.25, "PSI だけで決めています"),
        (lambda r, live: scores(r, live)[1] < 0.01, "KS の p 値だけで決めています"),
        (lambda r, live: (s := scores(r, live))[0] < 0.25 and s[1] < 0.01, "PSI の不等号の向きが逆"),
        (lambda r, live: (s := scores(r, live))[0] > 0.25 and s[1] > 0.01, "p 値の不等号の向きが逆"),
        (lambda r, live: (s := scores(r, live))[0] < 0.25 and s[1] > 0.01, "両方とも逆"),
        (lambda r, live: scores(r, live), "True か False を返して"),
        (lambda r, live: (s := scores(r, live))[0] > 0.1 and s[1] < 0.01, "PSI のしきい値が 0.1"),
        (lambda r, live: (s := scores(r, live))[0] > 0.25 and s[1] < 0.05, "有意水準が 0.05"),
        (lambda r, live: (s := scores(r, live))[0] > 0.1 and s[1] < 0.05, "PSI 0.1、p 値 0.05"),
        (lambda r, live: (s := scores(live, r))[0] > 0.25 and s[1] < 0.01, r"psi の引数が逆です"),
        (lambda r, live: psi(r, live) > 0.25 and ks_2samp(r, live).statistic < 0.01, "統計量（statistic"),
    ],
    ids=[
        "or",
        "psi-only",
        "ks-only",
        "psi-flipped",
        "p-flipped",
        "both-flipped",
        "returns-the-scores",
        "psi-threshold-0.1",
        "alpha-0.05",
        "both-thresholds-loose",
        "reference-and-live-swapped",
        "ks-statistic",
    ],
)
def test_window_drifted_rejects_wrong_answers(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks_08.check_window_drifted(wrong)


def test_the_lesson_s_feature_drift_passes_the_learner_s_check():
    """Notebook 08's DriftMonitor decides with course_lib.drift.feature_drift: it must be a right answer too."""
    checks_08.check_window_drifted(lambda reference, live: feature_drift("x", reference, live).drifted)


def test_the_drift_windows_cover_every_case_the_rule_is_judged_on():
    """The windows hold each (PSI high?, p low?) quadrant, PSI alone alarms on many unshifted windows, and the rule of
    both on at most MAX_FALSE_ALARMS: otherwise the wrong rules above would pass for want of a window."""
    windows = checks_08._scored_windows()
    quadrants = {(w.psi > 0.25, w.p_value < 0.01) for w in windows}
    assert quadrants == {(True, True), (True, False), (False, True), (False, False)}
    unshifted = windows[: checks_08.UNSHIFTED_WINDOWS]
    assert sum(w.psi > 0.25 for w in unshifted) > 5 * checks_08.MAX_FALSE_ALARMS
    assert sum(w.drifted for w in unshifted) <= checks_08.MAX_FALSE_ALARMS


def test_the_border_windows_sit_between_the_thresholds_with_a_margin():
    """Where a threshold of 0.1 or 0.05 or swapped arguments answer otherwise, far enough from every threshold that
    another machine's last bits cannot move a window across one."""
    between_psi, between_p, swapped = checks_08._scored_windows()[-3:]
    assert 0.13 < between_psi.psi < 0.22 and 0.13 < between_psi.swapped_psi < 0.22 and between_psi.p_value < 0.002
    assert between_p.psi > 0.35 and between_p.swapped_psi > 0.35 and 0.015 < between_p.p_value < 0.035
    assert swapped.psi > 0.3 and swapped.swapped_psi < 0.22 and swapped.p_value < 0.002


def test_each_known_drift_mistake_answers_otherwise_somewhere():
    """Each wrong rule's verdicts differ from the rule's and from every other wrong rule's, so each hint is reachable
    and names one mistake."""
    windows = checks_08._scored_windows()
    verdicts = [tuple(rule(w) for w in windows) for rule, _ in checks_08.DRIFT_MISTAKES]
    assert len(set(verdicts)) == len(verdicts)
    assert tuple(w.drifted for w in windows) not in verdicts
