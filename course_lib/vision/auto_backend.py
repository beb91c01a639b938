"""`--backend auto`: time the backends this machine can run, keep those that pass their parity check, serve the fastest.

int8 changes answers a little (the parity check bounds how much), so it replaces the fastest fp32 backend only when it
is faster by a clear margin (INT8_MARGIN); between the two fp32 backends, which answer alike, the faster one wins.
This follows ONNX Runtime's performance guide: measure on the target machine, and quantize only where the CPU's int8
instructions make it pay (on x86 without VNNI they often do not).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from course_lib.bench import interleaved_calls
from course_lib.vision.backends import BACKENDS, OnnxInt8Backend, make_backend
from course_lib.vision.classifier import Classifier

AUTO = "auto"  # the backend name that asks for this choice
FP32_BACKENDS = ("torch", "onnx")
INT8_MARGIN = 0.10  # int8 must take at most 90 % of the fastest fp32 backend's time to be chosen
BUDGET_S = 3.0  # about how long the timing takes, all candidates together
MIN_ROUNDS, MAX_ROUNDS, BLOCK = 5, 200, 5


@dataclass(frozen=True)
class BackendChoice:
    """What `auto` measured and chose: the median time of one single-image call per backend, and why."""

    chosen: str
    reason: str
    p50_ms: dict[str, float]
    excluded: dict[str, str]  # candidate → why it was not timed (parity failed, could not be built)

    def as_dict(self) -> dict[str, Any]:
        """The choice as JSON-ready values (GET /health's `backend_choice`)."""
        return asdict(self)


def choose(p50_ms: Mapping[str, float], margin: float = INT8_MARGIN) -> tuple[str, str]:
    """The fastest fp32 backend, unless int8 is at least `margin` faster than it; return (name, reason)."""
    fp32 = {name: ms for name, ms in p50_ms.items() if name in FP32_BACKENDS}
    int8 = p50_ms.get("onnx-int8")
    if not fp32 and int8 is None:
        raise ValueError("no backend could be timed")
    if not fp32:
        return "onnx-int8", f"onnx-int8 was the only backend that could run ({int8:.1f} ms)"
    best = min(fp32, key=fp32.__getitem__)
    if int8 is not None and round(int8 / fp32[best], 9) <= 1 - margin:  # rounded: 5.4 / 6.0 is 10 % faster
        return "onnx-int8", (
            f"onnx-int8 took {int8:.1f} ms, {int8 / fp32[best]:.2f}× the fastest fp32 backend "
            f"({best}, {fp32[best]:.1f} ms): at least {margin:.0%} faster"
        )
    others = ", ".join(f"{name} {ms:.1f} ms" for name, ms in sorted(p50_ms.items()) if name != best)
    reason = f"{best} was the fastest fp32 backend ({fp32[best]:.1f} ms; {others})"
    if int8 is not None:
        reason += f"; int8 was not at least {margin:.0%} faster, so its accuracy cost is not worth it"
    return best, reason


def timed_p50_ms(backends: Mapping[str, Any], batch: Any, budget_s: float = BUDGET_S) -> dict[str, float]:
    """Median ms of one call per backend, taking turns in blocks (their thread pools go idle between turns)."""
    calls = {name: (lambda backend=backend: backend.probabilities(batch)) for name, backend in backends.items()}
    started = time.perf_counter()
    for call in calls.values():  # warm-up, and a first guess of how long one round takes
        call()
    round_s = max(time.perf_counter() - started, 1e-6)
    rounds = int(min(MAX_ROUNDS, max(MIN_ROUNDS, budget_s / round_s)))
    stats = interleaved_calls(calls, n=rounds, warmup=0, block=min(BLOCK, rounds))
    return {name: float(s.p50) for name, s in stats.items()}


def auto_backend(
    classifier: Classifier,
    candidates: Sequence[str] = BACKENDS,
    budget_s: float = BUDGET_S,
    margin: float = INT8_MARGIN,
    int8_min_agreement: float | None = None,
) -> Any:
    """Build each candidate, time those that start (int8 only after its parity check), return the chosen one.

    The returned backend carries the choice as `backend.choice` (a BackendChoice); it keeps its own `name`.
    """
    built: dict[str, Any] = {}
    excluded: dict[str, str] = {}
    for name in candidates:
        try:
            if name == "onnx-int8":  # quantizes the onnx backend's export when there is one (no second export)
                fp32 = built.get("onnx")
                built[name] = OnnxInt8Backend(classifier, fp32=fp32, min_agreement=int8_min_agreement)
            else:
                built[name] = make_backend(classifier, name)
        except Exception as exc:  # noqa: BLE001 - a backend that cannot start here is skipped, and the reason kept
            excluded[name] = f"{type(exc).__name__}: {exc}"
    if not built:
        raise RuntimeError(f"no backend could start: {excluded}")
    p50_ms = timed_p50_ms(built, classifier.example_input(1), budget_s)
    chosen, reason = choose(p50_ms, margin)
    backend = built[chosen]
    backend.choice = BackendChoice(chosen, reason, {name: round(ms, 3) for name, ms in p50_ms.items()}, excluded)
    return backend
