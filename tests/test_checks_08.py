"""The notebook-08 exercise checks accept the solutions notebook's answers (run from solutions/08 itself, so the test
and the notebook cannot drift apart), reject each likely wrong answer with its own Japanese message, and report
unfinished ones. Exercise 1's check scrapes a real server; exercise 2's runs the answer in two other processes."""

from __future__ import annotations

import hashlib
import math
import random
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import nbformat
import pytest
from scipy.stats import ks_2samp

from course_lib.drift import feature_drift, psi
from course_lib.exercises import checks_08
from course_lib.monitoring import bucket_of_rank, histogram_quantile
from course_lib.releases import BUCKETS, canary_bucket

# check_choose_version sends the answer to other processes with cloudpickle; this module cannot be imported there,
# so its wrong answers travel by value, as a notebook's functions do
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions" / "08_monitoring_and_safe_releases.ipynb"
SOLUTION_NAMES = ("quantile_from_buckets", "choose_version", "window_drifted")


@pytest.fixture(scope="module")
def solution() -> dict[str, Any]:
    """The solutions notebook's definitions: its code cells except the checks."""
    namespace: dict[str, Any] = {"__name__": "__main__"}  # as in a notebook: its functions travel by value
    for cell in nbformat.read(SOLUTIONS, as_version=4).cells:
        if cell.cell_type == "code" and "check(" not in cell.source:
            # dont_inherit: this module's `from __future__ import annotations` must not leak into the notebook
            code = compile(cell.source, f"solutions/08 cell {cell.id}", "exec", dont_inherit=True)
            exec(code, namespace)  # noqa: S102 - the course's own notebook
    assert all(name in namespace for name in SOLUTION_NAMES), f"solutions/08 does not define {SOLUTION_NAMES}"
    return namespace


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
    ],
    ids=["or", "psi-only", "ks-only", "psi-flipped", "p-flipped", "both-flipped", "returns-the-scores"],
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
    quadrants = {(score > 0.25, p < 0.01) for *_, score, p in windows}
    assert quadrants == {(True, True), (True, False), (False, True), (False, False)}
    unshifted = windows[: checks_08.UNSHIFTED_WINDOWS]
    assert sum(score > 0.25 for *_, score, _ in unshifted) > 5 * checks_08.MAX_FALSE_ALARMS
    assert sum(score > 0.25 and p < 0.01 for *_, score, p in unshifted) <= checks_08.MAX_FALSE_ALARMS
