"""Dynamic (micro-)batching: concurrent requests share one model call, run in a worker thread off the event loop.

When it pays off: on a GPU one forward pass over 8 images costs little more than over one, so batching multiplies
throughput. On a CPU the intra-op threads already keep the cores busy within one image, so a batch saves only the
per-call overhead (Python, framework dispatch, thread-pool wake-up) and some memory traffic: worth it for small
models under concurrent load, while every request may wait up to ``max_wait_ms`` longer.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

RECENT_BATCHES = 32  # batch durations kept for the mean behind the retry-after hint


class BatcherError(RuntimeError):
    """Base class of the batcher's own errors."""


class QueueFullError(BatcherError):
    """The queue holds max_queue items: refused at once; retry after ``retry_after_s`` seconds."""

    def __init__(self, retry_after_s: float, max_queue: int) -> None:
        super().__init__(f"batch queue is full ({max_queue} items waiting); retry after {retry_after_s:.3f} s")
        self.retry_after_s = retry_after_s


class BatcherStoppedError(BatcherError):
    """The batcher is stopping or stopped: it takes no new items."""


class BatchResultError(BatcherError):
    """run_batch returned a number of results different from the number of items it was given."""


@dataclass(frozen=True)
class BatcherStats:
    """Counters of one batcher: how many batches ran and how full they were."""

    max_batch: int
    batches: int  # batches taken from the queue and run (re-runs of single items are not counted)
    items: int  # items in those batches
    size_histogram: dict[int, int] = field(default_factory=dict)  # batch size -> number of batches
    failed_batches: int = 0  # batches whose run_batch raised, so their items were re-run one by one
    rejected: int = 0  # submits refused with QueueFullError
    cancelled: int = 0  # callers cancelled before their item was taken (the item never ran)
    mean_batch_s: float = 0.0  # mean duration of the last RECENT_BATCHES run_batch calls

    @property
    def mean_size(self) -> float:
        """Mean number of items per batch (0 before the first batch)."""
        return self.items / self.batches if self.batches else 0.0

    @property
    def fill(self) -> float:
        """Mean batch size as a fraction of max_batch (1.0 = every batch full)."""
        return self.mean_size / self.max_batch


@dataclass(eq=False)
class _Pending(Generic[T, R]):
    """One caller's item, its future and when it arrived (loop time)."""

    item: T
    future: asyncio.Future[R]
    arrived: float
    taken: bool = False


@dataclass(frozen=True)
class _Outcome:
    """What one run_batch call gave: results or an exception, and how long it took."""

    results: list[Any] | None
    error: Exception | None
    seconds: float


def _deliverable(exc: Exception) -> Exception:
    """StopIteration cannot be set on an asyncio future: wrap it, as PEP 479 does for generators."""
    if isinstance(exc, StopIteration):
        wrapped = RuntimeError("run_batch raised StopIteration")
        wrapped.__cause__ = exc
        return wrapped
    return exc


def _validate(max_batch: int, max_wait_ms: float, max_queue: int) -> None:
    """Raise ValueError for settings the batcher cannot work with."""
    if not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch must be an integer >= 1, got {max_batch!r}")
    if not isinstance(max_wait_ms, int | float) or not math.isfinite(max_wait_ms) or max_wait_ms < 0:
        raise ValueError(f"max_wait_ms must be a finite number >= 0, got {max_wait_ms!r}")
    if not isinstance(max_queue, int) or max_queue < 1:
        raise ValueError(f"max_queue must be an integer >= 1, got {max_queue!r}")
    if max_queue < max_batch:
        raise ValueError(f"max_queue ({max_queue}) must be >= max_batch ({max_batch}), or no batch could fill up")


class MicroBatcher(Generic[T, R]):
    """Collects concurrent submits into batches of up to max_batch items for one blocking run_batch call."""

    def __init__(
        self,
        run_batch: Callable[[list[T]], Iterable[R]],
        *,
        max_batch: int = 8,
        max_wait_ms: float = 5.0,
        max_queue: int = 64,
    ) -> None:
        """run_batch(items) returns one result per item, in order; it runs in the batcher's own worker thread."""
        if not callable(run_batch):
            raise TypeError(f"run_batch must be callable, got {type(run_batch).__name__}")
        _validate(max_batch, max_wait_ms, max_queue)
        self._run_batch = run_batch
        self.max_batch, self.max_wait_ms, self.max_queue = max_batch, float(max_wait_ms), max_queue
        self._queue: deque[_Pending[T, R]] = deque()
        self._inflight: list[_Pending[T, R]] = []
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._sizes: Counter[int] = Counter()
        self._durations: deque[float] = deque(maxlen=RECENT_BATCHES)
        self._counts = Counter[str]()

    # ---- public API -------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._task is not None and not self._task.done() and not self._closing

    @property
    def queued(self) -> int:
        """Items waiting to be taken into a batch (they count against max_queue)."""
        return len(self._queue)

    async def start(self) -> None:
        """Start the collector task on the running loop and the worker thread; a second call does nothing."""
        if self._closing:
            raise BatcherStoppedError("a stopped batcher cannot be restarted; create a new one")
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        # One thread: one model call at a time; the batch, and the model's own intra-op threads, use the cores.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="micro-batcher")
        self._task = self._loop.create_task(self._collect(), name="micro-batcher")

    async def submit(self, item: T) -> R:
        """Queue item and wait for its result (or the exception its run raised)."""
        self._check_accepting()
        if len(self._queue) >= self.max_queue:
            self._counts["rejected"] += 1
            raise QueueFullError(self.retry_after_s(), self.max_queue)
        assert self._loop is not None
        pending: _Pending[T, R] = _Pending(item, self._loop.create_future(), self._loop.time())
        self._queue.append(pending)
        self._wakeup.set()
        try:
            return await pending.future
        except asyncio.CancelledError:
            self._drop(pending)
            raise

    async def stop(self, timeout_s: float | None = None) -> None:
        """Refuse new submits and answer every queued item; after timeout_s the rest get BatcherStoppedError."""
        self._closing = True
        self._wakeup.set()
        if self._task is None:
            return
        # asyncio.wait neither cancels the task on timeout nor raises when another stop() cancelled it.
        done, _ = await asyncio.wait({self._task}, timeout=timeout_s)
        if not done:
            self._task.cancel()
            await asyncio.wait({self._task})
        self._shutdown_executor()

    async def __aenter__(self) -> MicroBatcher[T, R]:
        """Start on entering ``async with``."""
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop (draining) on leaving ``async with``."""
        await self.stop()

    def retry_after_s(self) -> float:
        """Seconds to work off the queue as it is: max_wait + (ceil(queued/max_batch) + 1) x mean batch duration."""
        batches_ahead = math.ceil(len(self._queue) / self.max_batch) + 1  # the queued ones and the one running
        return self.max_wait_ms / 1000.0 + batches_ahead * self._mean_duration()

    def stats(self) -> BatcherStats:
        """A snapshot of the counters."""
        return BatcherStats(
            max_batch=self.max_batch,
            batches=sum(self._sizes.values()),
            items=sum(size * n for size, n in self._sizes.items()),
            size_histogram=dict(sorted(self._sizes.items())),
            failed_batches=self._counts["failed_batches"],
            rejected=self._counts["rejected"],
            cancelled=self._counts["cancelled"],
            mean_batch_s=self._mean_duration(),
        )

    # ---- callers ----------------------------------------------------------------------------------------------

    def _check_accepting(self) -> None:
        """Raise unless submits are accepted now, from this loop."""
        if self._closing:
            raise BatcherStoppedError("the batcher is stopped; it takes no new items")
        if self._task is None:
            raise RuntimeError("MicroBatcher.submit() before start(): await batcher.start() first")
        if self._task.done():
            raise BatcherStoppedError("the batcher's collector task has ended (cancelled?); it takes no new items")
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError("MicroBatcher.submit() from another event loop than the one start() ran on")

    def _drop(self, pending: _Pending[T, R]) -> None:
        """Forget a cancelled caller: its item leaves the queue unless a batch already took it."""
        if not pending.taken:
            self._counts["cancelled"] += 1
            if pending in self._queue:
                self._queue.remove(pending)
        if pending.future.done() and not pending.future.cancelled():
            pending.future.exception()  # mark retrieved: asyncio would log "exception was never retrieved"

    # ---- collector --------------------------------------------------------------------------------------------

    async def _collect(self) -> None:
        """Form and run batches until stopped and drained; whatever is left then gets BatcherStoppedError."""
        try:
            while batch := await self._next_batch():
                await self._run(batch)
        finally:
            self._fail_all(self._inflight + list(self._queue))
            self._shutdown_executor()

    async def _next_batch(self) -> list[_Pending[T, R]]:
        """Wait until max_batch items are queued, the first one waited max_wait, or stop; [] when drained."""
        while True:
            while self._queue and self._queue[0].future.done():
                self._queue.popleft()  # a cancelled caller whose submit has not run its except clause yet
            if not self._queue:
                if self._closing:
                    return []
                await self._wait(None)
                continue
            assert self._loop is not None
            remaining = self._queue[0].arrived + self.max_wait_ms / 1000.0 - self._loop.time()
            if self._closing or len(self._queue) >= self.max_batch or remaining <= 0:
                batch = self._take()
                if batch:
                    return batch
                continue
            await self._wait(remaining)

    async def _wait(self, timeout_s: float | None) -> None:
        """Sleep until a submit or stop sets the wake-up event, or timeout_s passes."""
        self._wakeup.clear()
        try:
            async with asyncio.timeout(timeout_s):
                await self._wakeup.wait()
        except TimeoutError:
            pass

    def _take(self) -> list[_Pending[T, R]]:
        """Pop up to max_batch items whose callers still wait."""
        batch: list[_Pending[T, R]] = []
        while self._queue and len(batch) < self.max_batch:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.taken = True
                batch.append(pending)
        return batch

    async def _run(self, batch: list[_Pending[T, R]]) -> None:
        """Run one batch; if it raises, re-run its items one by one so only the bad ones fail."""
        self._inflight = batch  # kept after the run: _collect fails those left unanswered if it is cancelled
        outcome = await self._call([p.item for p in batch])
        self._sizes[len(batch)] += 1
        self._durations.append(outcome.seconds)
        if outcome.error is None or len(batch) == 1:
            self._resolve(batch, outcome)
            return
        self._counts["failed_batches"] += 1
        for pending in batch:
            if not pending.future.done():
                self._resolve([pending], await self._call([pending.item]))

    async def _call(self, items: list[T]) -> _Outcome:
        """run_batch(items) in the worker thread."""
        assert self._loop is not None
        return await self._loop.run_in_executor(self._executor, self._timed_call, items)

    def _timed_call(self, items: list[T]) -> _Outcome:
        """Call run_batch (in the worker thread) and catch what it raises."""
        start = time.perf_counter()
        try:
            results = list(self._run_batch(items))
        except Exception as exc:
            return _Outcome(None, _deliverable(exc), time.perf_counter() - start)
        return _Outcome(results, None, time.perf_counter() - start)

    def _resolve(self, batch: list[_Pending[T, R]], outcome: _Outcome) -> None:
        """Hand each caller its result, the exception, or a BatchResultError for a wrong number of results."""
        for i, pending in enumerate(batch):
            if pending.future.done():
                continue  # the caller was cancelled while its item ran
            if outcome.error is not None:
                pending.future.set_exception(outcome.error)
            elif len(results := outcome.results or []) != len(batch):
                message = f"run_batch returned {len(results)} results for a batch of {len(batch)} items"
                pending.future.set_exception(BatchResultError(message))
            else:
                pending.future.set_result(results[i])

    def _fail_all(self, pendings: list[_Pending[T, R]]) -> None:
        """Answer every caller still waiting with BatcherStoppedError (stop timed out or the loop is closing)."""
        for pending in pendings:
            if not pending.future.done():
                pending.future.set_exception(BatcherStoppedError("the batcher stopped before this item was run"))
        self._queue.clear()

    def _shutdown_executor(self) -> None:
        """Let the worker thread end once its current call returns (a second call does nothing)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _mean_duration(self) -> float:
        """Mean duration of the recent run_batch calls in seconds (0 before the first)."""
        return sum(self._durations) / len(self._durations) if self._durations else 0.0
