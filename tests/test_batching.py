"""The micro-batcher with real threads and a real event loop: routing, flushing, isolation, cancellation,
backpressure, drain on stop, stats. Structural assertions; the few timing bounds have wide margins."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from course_lib.batching import (
    BatcherStoppedError,
    BatchResultError,
    MicroBatcher,
    QueueFullError,
)

HANG_S = 10.0  # a caller not answered within this is hanging; generous for 2 loaded cores


class BadItem(Exception):
    """What the test model raises for a negative item."""


class Model:
    """A blocking run_batch that records what it saw; negative items raise, a closed gate holds the thread."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.batches: list[list[Any]] = []
        self.threads: set[int] = set()
        self.raised: list[BadItem] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, items: list[Any]) -> list[Any]:
        """One result per item: ("out", item)."""
        self.batches.append(list(items))
        self.threads.add(threading.get_ident())
        self.entered.set()
        if not self.gate.wait(HANG_S):
            raise TimeoutError("gate never opened")
        time.sleep(self.delay_s)
        bad = [x for x in items if isinstance(x, int) and x < 0]
        if bad:
            self.raised.append(BadItem(f"bad item {bad[0]}"))
            raise self.raised[-1]
        return [("out", x) for x in items]

    def hold(self) -> None:
        """Make the next call block until release()."""
        self.gate.clear()
        self.entered.clear()

    def release(self) -> None:
        """Let a held call continue."""
        self.gate.set()

    @property
    def sizes(self) -> list[int]:
        """Sizes of the batches run_batch saw, in order."""
        return [len(b) for b in self.batches]

    @property
    def seen(self) -> list[Any]:
        """Every item run_batch saw."""
        return [x for b in self.batches for x in b]


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    """asyncio.run with a bound, so a hanging batcher fails the test instead of blocking it."""

    async def bounded() -> Any:
        return await asyncio.wait_for(main(), HANG_S * 2)

    return asyncio.run(bounded())


async def entered(model: Model) -> None:
    """Wait (off the loop) until the held call has started."""
    assert await asyncio.to_thread(model.entered.wait, HANG_S), "run_batch was never called"


def spawn(batcher: MicroBatcher, items: list[Any]) -> list[asyncio.Task]:
    """One task per item submitting it; all are queued before the collector runs again."""
    return [asyncio.ensure_future(batcher.submit(x)) for x in items]


async def outcomes(tasks: list[asyncio.Task]) -> list[Any]:
    """Result or exception of each task, in order, failing the test if any hangs."""
    return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), HANG_S)


# ---- routing ----------------------------------------------------------------------------------------------------


def test_each_caller_gets_its_own_result_with_shuffled_arrival() -> None:
    rng = random.Random(0)
    items = list(range(200))
    rng.shuffle(items)
    delays = {x: rng.uniform(0, 0.05) for x in items}

    async def client(batcher: MicroBatcher, x: int) -> tuple[int, Any]:
        await asyncio.sleep(delays[x])
        return x, await batcher.submit(x)

    async def main() -> tuple[list[tuple[int, Any]], Model]:
        model = Model(delay_s=0.002)
        async with MicroBatcher(model, max_batch=8, max_wait_ms=2, max_queue=256) as batcher:
            return await asyncio.gather(*(client(batcher, x) for x in items)), model

    pairs, model = run(main)
    assert all(result == ("out", x) for x, result in pairs)
    assert sorted(model.seen) == sorted(items)  # every item ran exactly once
    assert max(model.sizes) > 1, "no batch formed: the test did not exercise batching"
    assert max(model.sizes) <= 8


def test_run_batch_runs_in_one_worker_thread_while_the_loop_keeps_serving() -> None:
    async def main() -> tuple[int, Model]:
        model = Model()
        async with MicroBatcher(model, max_batch=4, max_wait_ms=0) as batcher:
            model.hold()
            task = spawn(batcher, [1])[0]
            await entered(model)
            ticks = 0
            for _ in range(5):  # the loop runs other coroutines while run_batch blocks
                await asyncio.sleep(0.01)
                ticks += 1
            model.release()
            assert await task == ("out", 1)
            await batcher.submit(2)
        return ticks, model

    ticks, model = run(main)
    assert ticks == 5
    assert len(model.threads) == 1
    assert threading.get_ident() not in model.threads


# ---- flushing ---------------------------------------------------------------------------------------------------


def test_burst_forms_full_batches_of_at_most_max_batch() -> None:
    async def main() -> tuple[list[Any], Model]:
        model = Model()
        async with MicroBatcher(model, max_batch=8, max_wait_ms=100, max_queue=64) as batcher:
            return await outcomes(spawn(batcher, list(range(50)))), model

    results, model = run(main)
    assert results == [("out", x) for x in range(50)]
    assert model.sizes == [8, 8, 8, 8, 8, 8, 2]


def test_a_full_batch_does_not_wait_for_max_wait() -> None:
    async def main() -> float:
        model = Model()
        async with MicroBatcher(model, max_batch=4, max_wait_ms=60_000) as batcher:
            start = time.monotonic()
            await outcomes(spawn(batcher, [1, 2, 3, 4]))
            return time.monotonic() - start

    assert run(main) < HANG_S  # a batcher that waited for max_wait would take a minute (wait_for fails first)


def test_a_lone_item_is_answered_after_max_wait() -> None:
    async def main() -> tuple[float, Model]:
        model = Model()
        async with MicroBatcher(model, max_batch=8, max_wait_ms=300) as batcher:
            start = time.monotonic()
            assert await asyncio.wait_for(batcher.submit(7), HANG_S) == ("out", 7)
            return time.monotonic() - start, model

    elapsed, model = run(main)
    assert elapsed >= 0.29  # it waited for company ...
    assert model.sizes == [1]  # ... and was then run alone (a lower bound only: no upper wall-clock limit)


def test_items_arriving_within_max_wait_share_a_batch() -> None:
    async def main() -> Model:
        model = Model()
        async with MicroBatcher(model, max_batch=8, max_wait_ms=1_000) as batcher:
            first = spawn(batcher, [1])
            await asyncio.sleep(0.1)
            await outcomes(first + spawn(batcher, [2]))
        return model

    assert run(main).batches == [[1, 2]]


def test_max_wait_zero_takes_what_is_queued_at_once() -> None:
    async def main() -> Model:
        model = Model()
        async with MicroBatcher(model, max_batch=8, max_wait_ms=0) as batcher:
            await outcomes(spawn(batcher, [1, 2, 3]))
            await batcher.submit(4)
        return model

    assert run(main).batches == [[1, 2, 3], [4]]


# ---- isolation of failures --------------------------------------------------------------------------------------


def test_a_failing_item_fails_only_its_caller_with_the_original_exception() -> None:
    async def main() -> tuple[list[Any], Model, Any]:
        model = Model()
        async with MicroBatcher(model, max_batch=8, max_wait_ms=50) as batcher:
            results = await outcomes(spawn(batcher, [1, 2, -3, 4, -5]))
            return results, model, batcher.stats()

    results, model, stats = run(main)
    assert results[0] == ("out", 1) and results[1] == ("out", 2) and results[3] == ("out", 4)
    assert type(results[2]) is BadItem and str(results[2]) == "bad item -3"
    assert type(results[4]) is BadItem and str(results[4]) == "bad item -5"
    assert results[2] is model.raised[1] and results[4] is model.raised[2]  # the objects run_batch raised
    assert model.sizes == [5, 1, 1, 1, 1, 1]  # the batch, then each item alone
    assert stats.failed_batches == 1 and stats.batches == 1


def test_a_lone_failing_item_gets_the_exception_without_a_rerun() -> None:
    async def main() -> tuple[Any, Model]:
        model = Model()
        async with MicroBatcher(model, max_batch=8, max_wait_ms=0) as batcher:
            (result,) = await outcomes(spawn(batcher, [-1]))
            assert await batcher.submit(2) == ("out", 2)  # the batcher still serves
        return result, model

    result, model = run(main)
    assert result is model.raised[0]
    assert model.sizes == [1, 1]


def one_short(items: list[int]) -> list[int]:
    """One result too few for a batch (right for a single item)."""
    return items[1:] if len(items) > 1 else items


def doubled(items: list[int]) -> list[int]:
    """Twice the results for a batch (right for a single item)."""
    return items * 2 if len(items) > 1 else items


@pytest.mark.parametrize(("wrong", "got"), [(one_short, 2), (doubled, 6)])
def test_wrong_number_of_results_fails_every_caller_of_the_batch(wrong: Callable[[list], list], got: int) -> None:
    async def main() -> list[Any]:
        async with MicroBatcher(wrong, max_batch=8, max_wait_ms=50) as batcher:
            results = await outcomes(spawn(batcher, [1, 2, 3]))
            assert await batcher.submit(4) == 4  # the batcher still serves (one result for one item)
            return results

    results = run(main)
    assert all(type(r) is BatchResultError for r in results)
    assert all(str(r) == f"run_batch returned {got} results for a batch of 3 items" for r in results)


def test_stop_iteration_from_run_batch_reaches_the_caller_as_runtime_error() -> None:
    def broken(items: list[int]) -> list[int]:
        return [next(iter([]))]

    async def main() -> list[Any]:
        async with MicroBatcher(broken, max_batch=2, max_wait_ms=0) as batcher:
            return await outcomes(spawn(batcher, [1]))

    (result,) = run(main)
    assert type(result) is RuntimeError and isinstance(result.__cause__, StopIteration)


# ---- cancellation -----------------------------------------------------------------------------------------------


def test_a_caller_cancelled_before_its_item_is_taken_is_dropped() -> None:
    async def main() -> tuple[list[Any], Model, Any]:
        model = Model()
        async with MicroBatcher(model, max_batch=2, max_wait_ms=0) as batcher:
            model.hold()
            running = spawn(batcher, ["running"])
            await entered(model)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(batcher.submit("gone"), 0.05)  # a client that timed out
            later = spawn(batcher, ["later"])
            await asyncio.sleep(0)
            assert batcher.queued == 1
            model.release()
            return await outcomes(running + later), model, batcher.stats()

    results, model, stats = run(main)
    assert results == [("out", "running"), ("out", "later")]
    assert "gone" not in model.seen
    assert stats.cancelled == 1


def test_a_cancelled_caller_behind_a_live_one_is_skipped_when_the_batch_is_taken() -> None:
    async def main() -> tuple[Model, Any]:
        model = Model()
        async with MicroBatcher(model, max_batch=8, max_wait_ms=0) as batcher:
            await batcher.submit(0)  # the collector now idles until the next submit wakes it
            live, gone = spawn(batcher, [1, 2])
            await asyncio.sleep(0)  # both submits ran and woke the collector; it runs before gone's except clause
            gone.cancel()
            assert await asyncio.wait_for(live, HANG_S) == ("out", 1)
            return model, batcher.stats()

    model, stats = run(main)
    assert model.batches == [[0], [1]]
    assert stats.cancelled == 1


def test_a_caller_cancelled_while_its_batch_runs_does_not_break_the_others() -> None:
    async def main() -> tuple[list[Any], list[Any], Model]:
        model = Model()
        async with MicroBatcher(model, max_batch=4, max_wait_ms=0) as batcher:
            model.hold()
            tasks = spawn(batcher, [1, 2, 3])
            await entered(model)
            tasks[1].cancel()
            await asyncio.sleep(0.05)
            model.release()
            first = await outcomes(tasks)
            again = await outcomes(spawn(batcher, [4, 5]))
        return first, again, model

    first, again, model = run(main)
    assert first[0] == ("out", 1) and first[2] == ("out", 3)
    assert isinstance(first[1], asyncio.CancelledError)
    assert again == [("out", 4), ("out", 5)]
    assert model.batches == [[1, 2, 3], [4, 5]]


# ---- backpressure -----------------------------------------------------------------------------------------------


def test_a_full_queue_refuses_at_once_and_frees_room_as_batches_are_taken() -> None:
    async def main() -> tuple[list[Any], Any]:
        model = Model()
        async with MicroBatcher(model, max_batch=2, max_wait_ms=0, max_queue=4) as batcher:
            model.hold()
            tasks = spawn(batcher, [1, 2])
            await entered(model)  # 1 and 2 are running, the queue is empty
            tasks += spawn(batcher, [3, 4, 5, 6])
            await asyncio.sleep(0)
            assert batcher.queued == 4
            with pytest.raises(QueueFullError) as refused:
                await batcher.submit(7)  # raises before awaiting anything: no wait_for needed
            assert refused.value.retry_after_s >= 0
            model.release()
            results = await outcomes(tasks)
            assert await batcher.submit(8) == ("out", 8)
            return results, batcher.stats()

    results, stats = run(main)
    assert results == [("out", x) for x in range(1, 7)]
    assert stats.rejected == 1


def test_retry_after_follows_recent_batch_durations() -> None:
    async def hint(delay_s: float) -> float:
        model = Model(delay_s=delay_s)
        async with MicroBatcher(model, max_batch=2, max_wait_ms=0, max_queue=8) as batcher:
            await outcomes(spawn(batcher, [1, 2]))
            await outcomes(spawn(batcher, [3, 4]))
            model.delay_s = 0.0
            model.hold()
            tasks = spawn(batcher, [5, 6])
            await entered(model)
            tasks += spawn(batcher, list(range(10, 18)))
            await asyncio.sleep(0)
            with pytest.raises(QueueFullError) as refused:
                await batcher.submit(99)
            model.release()
            await outcomes(tasks)
            return refused.value.retry_after_s

    slow, fast = run(lambda: hint(0.2)), run(lambda: hint(0.0))
    assert slow >= 5 * 0.2  # (8 queued / 2 per batch + the running one) x at least 0.2 s per batch
    assert fast < 0.5 * slow


# ---- stop -------------------------------------------------------------------------------------------------------


def test_stop_answers_everything_queued_then_refuses() -> None:
    async def main() -> tuple[list[Any], Model]:
        model = Model(delay_s=0.01)
        batcher = MicroBatcher(model, max_batch=4, max_wait_ms=60_000, max_queue=64)
        await batcher.start()
        tasks = spawn(batcher, list(range(10)))
        await asyncio.sleep(0)
        await asyncio.wait_for(batcher.stop(), HANG_S)  # does not wait a minute for max_wait either
        assert all(t.done() for t in tasks)
        with pytest.raises(BatcherStoppedError):
            await batcher.submit(99)
        await batcher.stop()  # twice is harmless
        assert not batcher.running
        return await outcomes(tasks), model

    results, model = run(main)
    assert results == [("out", x) for x in range(10)]
    assert 99 not in model.seen


def test_stop_answers_every_caller_when_run_batch_raises_during_the_drain() -> None:
    async def main() -> list[Any]:
        model = Model()
        batcher = MicroBatcher(model, max_batch=4, max_wait_ms=60_000)
        await batcher.start()
        tasks = spawn(batcher, [-1, 2, -3, 4, -5, 6])
        await asyncio.sleep(0)
        await asyncio.wait_for(batcher.stop(), HANG_S)
        return await outcomes(tasks)

    results = run(main)
    assert [type(r) for r in results] == [BadItem, tuple, BadItem, tuple, BadItem, tuple]


def test_stop_with_timeout_answers_a_hung_batch_and_the_queue_with_stopped_error() -> None:
    async def main() -> list[Any]:
        model = Model()
        batcher = MicroBatcher(model, max_batch=2, max_wait_ms=0)
        await batcher.start()
        model.hold()
        tasks = spawn(batcher, [1, 2])
        await entered(model)
        tasks += spawn(batcher, [3])
        await asyncio.sleep(0)
        try:
            await batcher.stop(timeout_s=0.1)
            return await outcomes(tasks)
        finally:
            model.release()  # let the worker thread end

    results = run(main)
    assert all(type(r) is BatcherStoppedError for r in results)


def test_concurrent_stops_both_return() -> None:
    async def main() -> None:
        model = Model()
        batcher = MicroBatcher(model, max_batch=2, max_wait_ms=0)
        await batcher.start()
        model.hold()
        task = spawn(batcher, [1])[0]
        await entered(model)
        stops = [asyncio.ensure_future(batcher.stop(timeout_s=0.1)), asyncio.ensure_future(batcher.stop())]
        try:
            await asyncio.wait_for(asyncio.gather(*stops), HANG_S)
        finally:
            model.release()
        with pytest.raises(BatcherStoppedError):
            await task

    run(main)


def test_a_cancelled_collector_answers_its_callers_and_refuses_new_items() -> None:
    async def main() -> list[Any]:
        model = Model()
        batcher = MicroBatcher(model, max_batch=2, max_wait_ms=0)
        await batcher.start()
        model.hold()
        tasks = spawn(batcher, [1, 2, 3])
        await entered(model)
        (collector,) = [t for t in asyncio.all_tasks() if t.get_name() == "micro-batcher"]
        collector.cancel()  # what a framework cancelling every task at shutdown does
        results = await outcomes(tasks)
        model.release()
        assert not batcher.running
        with pytest.raises(BatcherStoppedError):
            await batcher.submit(4)
        await batcher.stop()
        return results

    assert all(type(r) is BatcherStoppedError for r in run(main))


def worker_threads() -> list[threading.Thread]:
    """The batchers' worker threads alive in this process."""
    return [t for t in threading.enumerate() if t.name.startswith("micro-batcher")]


def test_lifecycle_errors_and_no_thread_left_after_stop() -> None:
    async def main() -> MicroBatcher:
        batcher = MicroBatcher(Model())
        with pytest.raises(RuntimeError, match="before start"):
            await batcher.submit(1)
        await batcher.start()
        await batcher.start()  # a second start does nothing
        assert batcher.running
        await batcher.submit(1)
        assert worker_threads()
        await batcher.stop()
        with pytest.raises(BatcherStoppedError, match="restarted"):
            await batcher.start()
        return batcher

    batcher = run(main)  # kept alive: a dropped executor would end its thread without stop()
    deadline = time.monotonic() + HANG_S
    while worker_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not worker_threads(), f"stop() left {worker_threads()} running for {batcher!r}"


# ---- stats and settings -----------------------------------------------------------------------------------------


def test_stats_count_batches_and_their_sizes() -> None:
    async def main() -> Any:
        async with MicroBatcher(Model(delay_s=0.01), max_batch=8, max_wait_ms=0) as batcher:
            assert batcher.stats().batches == 0 and batcher.stats().mean_size == 0
            await outcomes(spawn(batcher, list(range(20))))
            return batcher.stats()

    stats = run(main)
    assert stats.size_histogram == {4: 1, 8: 2}
    assert (stats.batches, stats.items, stats.max_batch) == (3, 20, 8)
    assert stats.mean_size == pytest.approx(20 / 3) and stats.fill == pytest.approx(20 / 24)
    assert stats.mean_batch_s >= 0.01
    assert (stats.failed_batches, stats.rejected, stats.cancelled) == (0, 0, 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch": 0}, "max_batch must be an integer >= 1"),
        ({"max_batch": 2.5}, "max_batch must be an integer >= 1"),
        ({"max_wait_ms": -1}, "max_wait_ms must be a finite number >= 0"),
        ({"max_wait_ms": float("nan")}, "max_wait_ms must be a finite number >= 0"),
        ({"max_queue": 0}, "max_queue must be an integer >= 1"),
        ({"max_batch": 8, "max_queue": 4}, r"max_queue \(4\) must be >= max_batch \(8\)"),
    ],
)
def test_invalid_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MicroBatcher(Model(), **kwargs)


def test_valid_edge_settings_are_accepted() -> None:
    batcher = MicroBatcher(Model(), max_batch=1, max_wait_ms=0, max_queue=1)
    assert (batcher.max_batch, batcher.max_wait_ms, batcher.max_queue) == (1, 0.0, 1)
