"""Notebook 08's safe releases of a new model version inside one serving process: shadow, canary, promote, rollback.

A `ReleaseRouter` decides, per request, which `ModelVersion` answers:

- **shadow**: the stable version answers every client; the candidate gets a copy of the rows on a background
  thread, off the critical path, and only its comparison is recorded (top-1 agreement, largest probability
  difference, latency ratio, errors). The copy goes through a bounded queue: when the candidate falls behind,
  copies are dropped and counted instead of delaying anyone, and a crashing candidate is recorded, never raised.
- **canary**: a share of clients, chosen by a hash of a sticky key (the same client always gets the same version),
  is answered by the candidate. Without a client key the request id is used, and the split is per request.
- `promote()` makes the candidate stable; `rollback()` undoes the release in one call: it drops the candidate, or,
  after a promotion, returns to the version that was stable before.

The router's state lives in one process: with several workers or replicas, each has its own. A release then belongs in
one place in front of them all: a gateway's or service mesh's weighted routing, or in Ray Serve an ingress deployment
that holds handles to the stable and candidate deployments and splits by the same rule (Serve 2 has no declarative
percentage split).

`PromotionGate` turns a shadow report (and, for a retrained model, which fresh labelled rows each version got
right) into an automatic promote/reject decision with its reasons. A retrained model's gain is judged on the same
rows for both versions with McNemar's exact test (`mcnemar`): only the rows where the two disagree carry evidence,
and on a few dozen rows a gain of one or two rows is what chance gives.

What the shadow costs the client: putting the rows on a queue, plus sharing the CPU (and Python's GIL) with the
candidate. A candidate that is a scikit-learn model also takes `predict_iris`'s lock while it predicts, so a stable
forest may wait for one candidate prediction. A separate shadow service (or process) removes even that.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import binomtest

from course_lib.models import IrisPredictions, predict_iris

__all__ = ["ModelVersion", "ShadowReport", "ReleaseRouter", "GateDecision", "PromotionGate", "canary_bucket"]

BUCKETS = 10_000  # canary shares in steps of 0.01 %


@dataclass(frozen=True)
class ModelVersion:
    """A model as the router serves it: a name, a version string and a predict_proba/classes_ classifier."""

    name: str
    version: str
    model: Any


@dataclass(frozen=True)
class ShadowReport:
    """What shadowing measured: how the candidate compared with the stable version on the same requests."""

    stable: str
    candidate: str
    requests: int  # requests the stable version answered while the shadow ran
    compared: int  # of those, how many the candidate also answered
    dropped: int  # copies dropped because the candidate was behind
    errors: int  # copies on which the candidate raised
    agreement: float  # share of rows with the same top-1 class (nan before any comparison)
    max_probability_diff: float  # largest |p_candidate - p_stable| over all compared rows and classes
    latency_ratio: float  # median candidate time / median stable time on the compared requests
    last_errors: tuple[str, ...] = ()

    @property
    def error_rate(self) -> float:
        """Share of copies sent to the candidate on which it raised."""
        attempted = self.compared + self.errors
        return self.errors / attempted if attempted else 0.0


def canary_bucket(key: str) -> int:
    """A stable bucket 0…9999 for a key (sha256: the same on every process and machine, unlike hash())."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % BUCKETS


@dataclass
class _Shadow:
    """The running comparison of one candidate."""

    candidate: ModelVersion
    stable: ModelVersion
    copies: queue.Queue[tuple[Any, IrisPredictions, float] | None]
    worker: threading.Thread | None = None
    requests: int = 0
    compared: int = 0
    dropped: int = 0
    errors: int = 0
    rows: int = 0
    agreeing_rows: int = 0
    max_diff: float = 0.0
    stable_seconds: list[float] = field(default_factory=list)
    candidate_seconds: list[float] = field(default_factory=list)
    last_errors: deque[str] = field(default_factory=lambda: deque(maxlen=5))


class ReleaseRouter:
    """Routes each prediction to the stable version, a canary or (copied) to a shadow; promote and roll back."""

    def __init__(
        self,
        stable: ModelVersion,
        predict: Callable[[Any, Any], IrisPredictions] = predict_iris,
    ) -> None:
        self.stable = stable
        self.predict_with = predict
        self.candidate: ModelVersion | None = None
        self.previous: ModelVersion | None = None  # the stable version before the last promote(), for rollback()
        self.mode = "stable"  # "stable" | "shadow" | "canary"
        self.canary_percent = 0.0
        self._lock = threading.Lock()
        self._shadow: _Shadow | None = None
        self.on_change: Callable[[ModelVersion], None] | None = None  # e.g. update the model_info metric

    # -- releasing -------------------------------------------------------------------------------------------
    def start_shadow(self, candidate: ModelVersion, max_queued: int = 64) -> None:
        """Copy every request to candidate from now on (at most max_queued waiting); clients get the stable answers."""
        with self._lock:
            shadow = _Shadow(candidate, self.stable, queue.Queue(max_queued))
            shadow.worker = threading.Thread(target=self._run_shadow, args=(shadow,), name="shadow", daemon=True)
            previous, self._shadow = self._shadow, shadow
            self.candidate, self.mode, self.canary_percent = candidate, "shadow", 0.0
        self._stop(previous)
        shadow.worker.start()

    def start_canary(self, percent: float, candidate: ModelVersion | None = None) -> None:
        """Answer percent % of clients (by sticky key) with candidate (default: the one being shadowed)."""
        if not 0.0 <= percent <= 100.0:
            raise ValueError(f"percent must be between 0 and 100, got {percent}")
        with self._lock:
            candidate = candidate or self.candidate
            if candidate is None:
                raise ValueError("no candidate: pass one or start a shadow first")
            self.candidate, self.mode, self.canary_percent = candidate, "canary", float(percent)
            previous, self._shadow = self._shadow, None
        self._stop(previous)

    def promote(self) -> ModelVersion:
        """The candidate becomes the stable version for everyone; returns the version it replaced."""
        with self._lock:
            if self.candidate is None:
                raise ValueError("no candidate to promote")
            previous, self.stable = self.stable, self.candidate
            self.previous = previous
            self.candidate, self.mode, self.canary_percent = None, "stable", 0.0
            shadow, self._shadow = self._shadow, None
        self._stop(shadow)
        self._announce()
        return previous

    def rollback(self, to: ModelVersion | None = None) -> None:
        """Undo the release in one call: drop the candidate, or, with none, return to the version before promote().

        `to` names the version to serve instead (e.g. an older one kept from an earlier promote()).
        """
        with self._lock:
            if to is None and self.candidate is None and self.previous is not None:
                to = self.previous
            if to is not None:
                self.stable, self.previous = to, None
            self.candidate, self.mode, self.canary_percent = None, "stable", 0.0
            shadow, self._shadow = self._shadow, None
        self._stop(shadow)
        self._announce()

    def _announce(self) -> None:
        """Tell the listener which version is stable now."""
        if self.on_change is not None:
            self.on_change(self.stable)

    # -- serving ---------------------------------------------------------------------------------------------
    def choose(self, key: str) -> ModelVersion:
        """The version that answers this key: the candidate for the canary share of keys, stable otherwise.

        The bucket hashes the candidate's version with the key, so each release picks another share of clients.
        """
        with self._lock:
            mode, candidate, percent = self.mode, self.candidate, self.canary_percent
            stable = self.stable
        if mode == "canary" and candidate is not None:
            if canary_bucket(f"{candidate.version}/{key}") < percent * BUCKETS / 100.0:
                return candidate
        return stable

    def predict(self, rows: Any, version: ModelVersion) -> IrisPredictions:
        """Answer rows with version (from choose()); under a shadow, queue a copy for the candidate, never waiting."""
        started = time.perf_counter()
        predictions = self.predict_with(version.model, rows)
        elapsed = time.perf_counter() - started
        shadow = self._shadow
        if shadow is not None and version is shadow.stable:
            with self._lock:
                shadow.requests += 1
            try:
                shadow.copies.put_nowait((rows, predictions, elapsed))
            except queue.Full:
                with self._lock:
                    shadow.dropped += 1
        return predictions

    def _run_shadow(self, shadow: _Shadow) -> None:
        """A shadow's thread: run the candidate on each copied request and record the comparison, until None."""
        while (item := shadow.copies.get()) is not None:
            try:
                self._compare(shadow, *item)
            finally:
                shadow.copies.task_done()
        shadow.copies.task_done()

    @staticmethod
    def _stop(shadow: _Shadow | None) -> None:
        """Discard a shadow's waiting copies and end its thread after the copy it is running (never waits for it)."""
        if shadow is None:
            return
        while True:
            try:
                shadow.copies.get_nowait()
                shadow.copies.task_done()
            except queue.Empty:
                pass
            try:
                shadow.copies.put_nowait(None)
                return
            except queue.Full:  # a request put a copy in between: drain again
                continue

    def _compare(self, shadow: _Shadow, rows: Any, stable_predictions: IrisPredictions, stable_seconds: float) -> None:
        """Run the candidate on one copied request and record how it compares."""
        started = time.perf_counter()
        try:
            candidate_predictions = self.predict_with(shadow.candidate.model, rows)
        except Exception as exc:  # a crashing candidate is a finding, not an outage
            with self._lock:
                shadow.errors += 1
                shadow.last_errors.append(f"{type(exc).__name__}: {exc}")
            return
        elapsed = time.perf_counter() - started
        same_top1 = candidate_predictions.class_ids == stable_predictions.class_ids
        diff = float(np.max(np.abs(candidate_predictions.probabilities - stable_predictions.probabilities)))
        with self._lock:
            shadow.compared += 1
            shadow.rows += len(same_top1)
            shadow.agreeing_rows += int(same_top1.sum())
            shadow.max_diff = max(shadow.max_diff, diff)
            shadow.stable_seconds.append(stable_seconds)
            shadow.candidate_seconds.append(elapsed)

    def wait_for_shadow(self, timeout: float = 30.0) -> None:
        """Block until the candidate has handled every copy queued so far (for reports at a known point)."""
        shadow = self._shadow
        deadline = time.monotonic() + timeout
        while shadow is not None and shadow.copies.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def shadow_report(self) -> ShadowReport:
        """The comparison so far of the candidate being shadowed."""
        with self._lock:
            shadow = self._shadow
            if shadow is None:
                raise ValueError("no shadow is running; start_shadow(candidate) first")
            ratio = (
                float(np.median(shadow.candidate_seconds) / np.median(shadow.stable_seconds))
                if shadow.compared
                else float("nan")
            )
            return ShadowReport(
                stable=self.stable.version,
                candidate=shadow.candidate.version,
                requests=shadow.requests,
                compared=shadow.compared,
                dropped=shadow.dropped,
                errors=shadow.errors,
                agreement=shadow.agreeing_rows / shadow.rows if shadow.rows else float("nan"),
                max_probability_diff=shadow.max_diff,
                latency_ratio=ratio,
                last_errors=tuple(shadow.last_errors),
            )

    def close(self) -> None:
        """Stop the shadow, if one runs (copies still queued are discarded)."""
        with self._lock:
            shadow, self._shadow = self._shadow, None
        self._stop(shadow)
        if shadow is not None and shadow.worker is not None:
            shadow.worker.join(timeout=10)


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test on the same labelled rows: is the candidate right more often than chance would give?"""

    rows: int
    candidate_only: int  # rows the candidate got right and the stable version wrong
    stable_only: int  # and the other way round
    p_value: float  # one-sided: P(at least candidate_only of the disagreements | both equally good)

    @property
    def gain(self) -> float:
        """Candidate accuracy − stable accuracy on these rows."""
        return (self.candidate_only - self.stable_only) / self.rows


def mcnemar(candidate_correct: Any, stable_correct: Any) -> McNemar:
    """Compare two versions' per-row correctness on the same labelled rows (exact binomial test on disagreements)."""
    candidate, stable = np.asarray(candidate_correct, dtype=bool), np.asarray(stable_correct, dtype=bool)
    if candidate.shape != stable.shape or candidate.ndim != 1 or candidate.size == 0:
        raise ValueError(
            f"need one correctness flag per row for both versions, got {candidate.shape} and {stable.shape}"
        )
    wins, losses = int(np.sum(candidate & ~stable)), int(np.sum(stable & ~candidate))
    p = binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue if wins + losses else 1.0
    return McNemar(candidate.size, wins, losses, float(p))


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict and, for every threshold, whether it held and what was measured."""

    promote: bool
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        verdict = "PROMOTE" if self.promote else "REJECT"
        return verdict + "\n" + "\n".join(f"  {reason}" for reason in self.reasons)


@dataclass(frozen=True)
class PromotionGate:
    """Explicit thresholds a candidate must meet. None turns a check off (say why where you do)."""

    min_compared: int = 200  # shadowed requests before any verdict
    max_error_rate: float = 0.0
    max_latency_ratio: float | None = 1.5
    min_agreement: float | None = 0.99  # for a candidate meant to answer the same (another runtime, int8)
    max_probability_diff: float | None = None
    min_accuracy_gain: float | None = None  # candidate − stable accuracy on fresh labelled rows (a retrained model)
    max_p_value: float | None = None  # McNemar's p on those rows: the gain must be more than chance (with the gain)

    def decide(self, report: ShadowReport, labelled: McNemar | None = None) -> GateDecision:
        """Check every threshold; promote only when all hold. `labelled`: `mcnemar(...)` on fresh labelled rows."""
        checks: list[tuple[bool, str]] = [
            (report.compared >= self.min_compared, f"compared {report.compared} ≥ {self.min_compared}"),
            (report.error_rate <= self.max_error_rate, f"error rate {report.error_rate:.3f} ≤ {self.max_error_rate}"),
        ]
        if self.max_latency_ratio is not None:
            checks.append(
                (
                    report.latency_ratio <= self.max_latency_ratio,
                    f"latency ratio {report.latency_ratio:.2f} ≤ {self.max_latency_ratio}",
                )
            )
        if self.min_agreement is not None:
            checks.append(
                (report.agreement >= self.min_agreement, f"agreement {report.agreement:.3f} ≥ {self.min_agreement}")
            )
        if self.max_probability_diff is not None:
            checks.append(
                (
                    report.max_probability_diff <= self.max_probability_diff,
                    f"max probability diff {report.max_probability_diff:.3f} ≤ {self.max_probability_diff}",
                )
            )
        if self.min_accuracy_gain is not None or self.max_p_value is not None:
            if labelled is None:
                checks.append((False, "accuracy gain: no labelled evaluation given"))
        if labelled is not None and self.min_accuracy_gain is not None:
            checks.append(
                (
                    labelled.gain >= self.min_accuracy_gain,
                    f"accuracy gain {labelled.gain:+.3f} on {labelled.rows} labelled rows ≥ {self.min_accuracy_gain:+}",
                )
            )
        if labelled is not None and self.max_p_value is not None:
            checks.append(
                (
                    labelled.p_value <= self.max_p_value,
                    f"McNemar p {labelled.p_value:.3f} ≤ {self.max_p_value} "
                    f"({labelled.candidate_only} rows only the candidate got right, "
                    f"{labelled.stable_only} only stable)",
                )
            )
        reasons = tuple(("ok    " if ok else "FAIL  ") + text for ok, text in checks)
        return GateDecision(all(ok for ok, _ in checks), reasons)
