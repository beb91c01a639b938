"""Drift scores on the course's iris data: unshifted windows pass, a shifted feature is found (and only it), the
false-alarm rate on unshifted windows stays low, the window slides, and both scores must agree."""

import numpy as np
import pytest
from sklearn.datasets import load_iris

from course_lib.data import iris_rows, iris_split
from course_lib.drift import PSI_THRESHOLD, DriftMonitor, feature_drift, psi

FEATURES = load_iris().feature_names
PETAL_LENGTH = 2


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """The training split: what the model saw."""
    return iris_split().X_train


def window(seed: int, shift: float = 0.0, n: int = 200) -> np.ndarray:
    """n live iris rows, with `shift` added to petal length."""
    rows = iris_rows(n, seed=seed)
    rows[:, PETAL_LENGTH] += shift
    return rows


def monitor(reference: np.ndarray, rows: np.ndarray) -> DriftMonitor:
    watch = DriftMonitor(reference, FEATURES, window=len(rows))
    watch.add(rows)
    return watch


def test_psi_is_zero_for_the_same_distribution_and_grows_with_the_shift():
    rng = np.random.default_rng(0)
    values = rng.normal(size=5000)
    assert psi(values, values) == pytest.approx(0.0, abs=1e-12)
    scores = [psi(values, values + shift) for shift in (0.1, 0.5, 1.0)]
    assert scores == sorted(scores) and scores[0] < 0.1 < scores[1], scores
    with pytest.raises(ValueError, match="at least one"):
        psi(values, np.array([]))


def test_an_unshifted_window_does_not_drift(reference):
    assert monitor(reference, window(seed=1)).drifted() == []


@pytest.mark.parametrize("shift", [0.25, 1.0])
def test_a_shifted_feature_drifts_and_only_that_one(reference, shift):
    report = {score.feature: score for score in monitor(reference, window(seed=2, shift=shift)).report()}
    assert [name for name, score in report.items() if score.drifted] == [FEATURES[PETAL_LENGTH]], report


def test_the_false_alarm_rate_on_unshifted_windows_is_low(reference, record_property):
    alarms = sum(bool(monitor(reference, window(seed=seed)).drifted()) for seed in range(100, 200))
    record_property("drift false alarms", f"{alarms}/100 unshifted windows of 200 rows")
    assert alarms <= 5  # alpha 0.01 per feature and 4 features: about 4 % at most if the features were independent


def test_both_scores_must_agree_because_psi_alone_reacts_to_noise(reference):
    """iris is measured to 0.1 cm, the live rows carry small noise: PSI over tied reference quantiles exceeds its
    threshold on some unshifted windows, where the KS test sees nothing surprising."""
    noisy = [
        score
        for seed in range(100, 140)
        for score in monitor(reference, window(seed=seed)).report()
        if score.psi > PSI_THRESHOLD
    ]
    assert noisy, "no unshifted window with a high PSI: the rule's reason would be untested"
    assert sum(score.drifted for score in noisy) <= len(noisy) // 10


def test_the_window_slides(reference):
    watch = DriftMonitor(reference, FEATURES, window=200)
    watch.add(window(seed=3, n=150))
    assert not watch.full
    watch.add(window(seed=4, shift=1.0))  # 200 shifted rows push every unshifted one out
    assert watch.full and watch.drifted() == [FEATURES[PETAL_LENGTH]]
    watch.add(window(seed=5))  # and 200 unshifted rows push the shifted ones out again
    assert watch.drifted() == []


def test_feature_drift_reports_its_scores(reference):
    score = feature_drift("petal", reference[:, PETAL_LENGTH], window(seed=6, shift=1.0)[:, PETAL_LENGTH])
    assert score.drifted and score.psi > PSI_THRESHOLD and score.p_value < 0.01 and 0 < score.ks_statistic <= 1


def test_bad_shapes_are_refused(reference):
    with pytest.raises(ValueError, match=r"\(rows, 4\)"):
        DriftMonitor(reference[:, :3], FEATURES)
    with pytest.raises(ValueError, match="fewer than 2"):
        DriftMonitor(reference, FEATURES).report()


def test_both_scores_must_agree_because_ks_alone_flags_harmless_shifts_in_large_windows():
    """With tens of thousands of rows, the KS test finds a shift of a twentieth of a standard deviation
    surprising; PSI says the distribution barely moved, and the verdict follows PSI."""
    rng = np.random.default_rng(1)
    score = feature_drift("x", rng.normal(size=20_000), rng.normal(loc=0.05, size=20_000))
    assert score.p_value < 0.01 and score.psi < 0.1 and not score.drifted, score
