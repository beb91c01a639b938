"""Shadow, canary, promotion gate and rollback on the iris FastAPI app over real HTTP: a shadow never changes or
delays a client's answer (slow and crashing candidates included), a canary is sticky and sized as asked."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from course_lib.apps import iris_fastapi
from course_lib.apps.iris_fastapi import TorchIrisClassifier
from course_lib.data import iris_rows
from course_lib.models import predict_iris, train_simple_nn
from course_lib.monitoring import capture_request_log, parse_metrics, sample_value
from course_lib.releases import BUCKETS, ModelVersion, PromotionGate, ShadowReport, canary_bucket, mcnemar
from course_lib.servers import serve

ROWS = iris_rows(120, seed=3)
SLOW_S = 2.0


@pytest.fixture(scope="module")
def candidate_net():
    """A second SimpleNN (another seed, fewer epochs): a real model that disagrees with `net` on some rows."""
    return train_simple_nn(epochs=40, seed=7)[0]


class Slow:
    """The real candidate network, SLOW_S seconds late on every prediction (a much heavier model)."""

    def __init__(self, net) -> None:
        self.inner = TorchIrisClassifier(net)
        self.classes_ = self.inner.classes_

    def predict_proba(self, X):
        time.sleep(SLOW_S)
        return self.inner.predict_proba(X)


class Crashing:
    """A candidate whose every prediction raises."""

    classes_ = np.arange(3)

    def predict_proba(self, X):
        raise RuntimeError("candidate broke")


def predict_all(url: str, rows, headers: dict[str, str] | None = None) -> list[requests.Response]:
    """POST every row to /predict from 4 clients; the responses in row order."""

    def ask(row):
        return requests.post(url + "/predict", json={"features": list(map(float, row))}, headers=headers, timeout=30)

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(ask, rows))


@pytest.fixture(scope="module")
def stable_answers(net):
    """The stable model's answers with no release running: what every client must keep getting under a shadow."""
    with serve(iris_fastapi.create_app(net, model_version="v1")) as server:
        return [r.json() for r in predict_all(server.url, ROWS)]


def test_shadow_never_changes_an_answer_and_compares_the_candidate(net, candidate_net, stable_answers):
    app = iris_fastapi.create_app(net, model_version="v1")
    release = iris_fastapi.release_of(app)
    with serve(app) as server:
        release.start_shadow(ModelVersion("SimpleNN", "v2", TorchIrisClassifier(candidate_net)))
        responses = predict_all(server.url, ROWS)
        release.wait_for_shadow()
        report = release.shadow_report()
    release.close()
    assert [r.json() for r in responses] == stable_answers
    assert {r.headers["X-Model-Version"] for r in responses} == {"v1"}
    stable = predict_iris(TorchIrisClassifier(net), ROWS)
    candidate = predict_iris(TorchIrisClassifier(candidate_net), ROWS)
    expected_agreement = float(np.mean(stable.class_ids == candidate.class_ids))
    assert 0.5 < expected_agreement < 1.0  # the candidate really differs, so the comparison is not vacuous
    assert (report.requests, report.compared, report.errors) == (len(ROWS), len(ROWS) - report.dropped, 0)
    assert report.dropped == 0
    assert report.agreement == pytest.approx(expected_agreement)
    largest = float(np.max(np.abs(stable.probabilities - candidate.probabilities)))
    assert report.max_probability_diff == pytest.approx(largest)
    assert report.latency_ratio > 0


def test_a_crashing_candidate_is_recorded_not_propagated(net, stable_answers):
    app = iris_fastapi.create_app(net, model_version="v1")
    release = iris_fastapi.release_of(app)
    with serve(app) as server:
        release.start_shadow(ModelVersion("Crashing", "v2", Crashing()))
        responses = predict_all(server.url, ROWS)
        release.wait_for_shadow()
        report = release.shadow_report()
    release.close()
    assert [r.json() for r in responses] == stable_answers
    assert report.errors == len(ROWS) and report.compared == 0 and report.error_rate == 1.0
    assert report.last_errors[-1] == "RuntimeError: candidate broke"
    decision = PromotionGate(min_compared=10).decide(report)
    assert not decision.promote and any("error rate" in r and r.startswith("FAIL") for r in decision.reasons)


def test_a_slow_candidate_never_makes_a_client_wait(net, candidate_net):
    app = iris_fastapi.create_app(net, model_version="v1")
    release = iris_fastapi.release_of(app)
    with serve(app) as server:
        release.start_shadow(ModelVersion("Slow", "v2", Slow(candidate_net)), max_queued=2)
        waits = []
        for row in ROWS[:10]:
            started = time.perf_counter()
            assert requests.post(server.url + "/predict", json={"features": list(map(float, row))}, timeout=30).ok
            waits.append(time.perf_counter() - started)
        report = release.shadow_report()
    release.close()
    # 10 answers while the candidate needs SLOW_S each: had any client waited for it, that answer took ≥ SLOW_S
    assert max(waits) < SLOW_S / 2, waits
    assert report.requests == 10 and report.dropped >= 5 and report.compared <= 1


def test_canary_is_sticky_sized_as_asked_promotes_and_rolls_back(net, candidate_net):
    app = iris_fastapi.create_app(net, model_version="v1")
    release = iris_fastapi.release_of(app)
    row = {"features": [6.0, 2.9, 4.5, 1.5]}
    with serve(app) as server, capture_request_log() as lines:

        def version_for(client: str) -> str:
            response = requests.post(server.url + "/predict", json=row, headers={"X-Client-ID": client}, timeout=30)
            return response.headers["X-Model-Version"]

        release.start_canary(25, ModelVersion("SimpleNN", "v2", TorchIrisClassifier(candidate_net)))
        clients = [f"user-{i}" for i in range(400)]
        first = [version_for(c) for c in clients]
        assert [version_for(c) for c in clients[:50]] == first[:50]  # sticky: the same client, the same version
        share = first.count("v2") / len(first)
        assert 0.18 < share < 0.32, share  # 25 % of 400 keys; binomial sd 2.2 points
        expected = ["v2" if canary_bucket(f"v2/{c}") < BUCKETS // 4 else "v1" for c in clients]
        assert first == expected
        assert [line["model_version"] for line in lines[: len(clients)]] == first

        release.rollback()
        assert {version_for(c) for c in clients[:50]} == {"v1"}

        release.start_canary(25, ModelVersion("SimpleNN", "v2", TorchIrisClassifier(candidate_net)))
        previous = release.promote()
        assert previous.version == "v1" and {version_for(c) for c in clients[:50]} == {"v2"}
        info = parse_metrics(requests.get(server.url + "/metrics", timeout=30).text)["model_info"].samples
        assert [s.labels["version"] for s in info] == ["v2"]
        release.rollback()  # after a promotion, one call returns to the version before it
        assert {version_for(c) for c in clients[:50]} == {"v1"}
        release.rollback(to=ModelVersion("SimpleNN", "v0", TorchIrisClassifier(net)))
        assert {version_for(c) for c in clients[:50]} == {"v0"}


def test_canary_bucket_is_the_same_in_every_process():
    # sha256, not hash(): Python salts str hashes per process, which would move clients between versions
    assert canary_bucket("user-1") == int.from_bytes(__import__("hashlib").sha256(b"user-1").digest()[:8]) % BUCKETS
    assert canary_bucket("user-1") == 2594
    with pytest.raises(ValueError):
        iris_fastapi.release_of(iris_fastapi.create_app(train_simple_nn(epochs=1)[0])).start_canary(120)


def report(**changes) -> ShadowReport:
    """A shadow report that passes the default gate, with some fields changed."""
    fields = dict(
        stable="v1",
        candidate="v2",
        requests=500,
        compared=500,
        dropped=0,
        errors=0,
        agreement=0.995,
        max_probability_diff=0.05,
        latency_ratio=1.1,
    )
    return ShadowReport(**{**fields, **changes})


@pytest.mark.parametrize(
    "changes, failing",
    [
        ({"compared": 150}, "compared"),
        ({"errors": 1, "compared": 499}, "error rate"),
        ({"latency_ratio": 1.6}, "latency ratio"),
        ({"agreement": 0.98}, "agreement"),
        ({"agreement": float("nan"), "latency_ratio": float("nan"), "compared": 0}, "agreement"),
    ],
)
def test_gate_rejects_each_threshold_with_its_reason(changes, failing):
    assert PromotionGate().decide(report()).promote
    decision = PromotionGate().decide(report(**changes))
    assert not decision.promote
    assert any(reason.startswith("FAIL") and failing in reason for reason in decision.reasons), decision


def correctness(rows: int, candidate_only: int, stable_only: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row correctness of two versions on `rows` labelled rows with the given disagreements (others both right)."""
    candidate, stable = np.ones(rows, dtype=bool), np.ones(rows, dtype=bool)
    stable[:candidate_only] = False
    candidate[candidate_only : candidate_only + stable_only] = False
    return candidate, stable


def test_gate_for_a_retrained_model_needs_a_labelled_evaluation():
    gate = PromotionGate(min_agreement=None, min_accuracy_gain=0.05, max_p_value=0.05)
    low_agreement = report(agreement=0.7)  # a retrained model is meant to answer differently on drifted input
    assert not gate.decide(low_agreement).promote  # no labels: no verdict
    assert gate.decide(low_agreement, mcnemar(*correctness(30, 5, 0))).promote  # p = 0.5 ** 5 = 0.031
    worse = gate.decide(low_agreement, mcnemar(*correctness(30, 0, 3)))
    assert not worse.promote and any(r.startswith("FAIL  accuracy gain -0.100") for r in worse.reasons), worse
    assert not PromotionGate(max_probability_diff=0.01).decide(report()).promote


def test_a_gain_of_two_rows_in_thirty_is_chance_for_mcnemar():
    """+0.067 clears a 0.05 gain threshold, but 2 wins and 0 losses is what two coin flips give a quarter of the time;
    the same gain on 300 rows (20 wins, 0 losses) is far from chance."""
    gate = PromotionGate(min_agreement=None, min_accuracy_gain=0.05, max_p_value=0.05)
    small = mcnemar(*correctness(30, 2, 0))
    assert small.gain == pytest.approx(2 / 30) and small.p_value == pytest.approx(0.25)
    decision = gate.decide(report(agreement=0.9), small)
    assert not decision.promote and [r for r in decision.reasons if r.startswith("FAIL")] == [
        "FAIL  McNemar p 0.250 ≤ 0.05 (2 rows only the candidate got right, 0 only stable)"
    ]
    large = mcnemar(*correctness(300, 20, 0))
    assert large.p_value < 1e-5 and gate.decide(report(agreement=0.9), large).promote


def test_mcnemar_counts_only_the_rows_where_the_versions_disagree():
    assert mcnemar(*correctness(1000, 0, 0)).p_value == 1.0  # identical answers: no evidence either way
    both_wrong = correctness(40, 6, 1)
    both_wrong[0][-5:] = both_wrong[1][-5:] = False  # rows both get wrong change the accuracies, not the test
    assert mcnemar(*both_wrong).p_value == mcnemar(*correctness(40, 6, 1)).p_value == pytest.approx(8 / 128)
    with pytest.raises(ValueError, match="one correctness flag per row"):
        mcnemar([True, False], [True])


def test_each_release_picks_another_share_of_clients(net, candidate_net):
    release = iris_fastapi.release_of(iris_fastapi.create_app(net, model_version="v1"))
    clients = [f"user-{i}" for i in range(2000)]
    picked = {}
    for version in ("v2", "v3"):
        release.start_canary(20, ModelVersion("SimpleNN", version, TorchIrisClassifier(candidate_net)))
        picked[version] = {c for c in clients if release.choose(c).version == version}
    both = len(picked["v2"] & picked["v3"]) / len(clients)
    assert 0.15 < len(picked["v2"]) / len(clients) < 0.25
    assert both < 0.08  # independent 20 % draws overlap in about 4 %; the same draw would overlap in 20 %


def test_a_failing_canary_is_counted_and_logged_under_its_own_version(net):
    app = iris_fastapi.create_app(net, model_version="v1")
    iris_fastapi.release_of(app).start_canary(100, ModelVersion("Crashing", "v2", Crashing()))
    with serve(app) as server, capture_request_log() as lines:
        response = requests.post(server.url + "/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}, timeout=30)
        families = parse_metrics(requests.get(server.url + "/metrics", timeout=30).text)
    assert response.status_code == 500
    assert [(line["status"], line["model_version"]) for line in lines] == [(500, "v2")]
    assert sample_value(families, "http_requests_total", status="500", version="v2") == 1
    assert sample_value(families, "http_requests_total", version="v1") == 0
