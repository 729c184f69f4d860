"""Micro-batching in a worker: concurrent requests share batches and each gets its own results."""

import asyncio
import time

import pytest

from mnist_service.batching import MicroBatcher


def identify(items: list) -> list:
    """A stand-in for decoding and the model whose result for each item is the item itself, so
    answers can be traced."""
    time.sleep(0.01)  # long enough for the next requests to queue up behind a running batch
    return [("result", item) for item in items]


def run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer():
    async def scenario():
        batcher = MicroBatcher(identify, max_batch=64)
        answers = await asyncio.gather(*(batcher.submit([n]) for n in range(40)))
        return batcher, answers

    batcher, answers = run(scenario())
    assert answers == [[("result", n)] for n in range(40)], "no cross-talk between requests"
    assert max(batcher.batch_sizes) > 1 and sum(batcher.batch_sizes) == 40


def test_a_request_of_several_items_gets_its_results_in_order():
    async def scenario():
        batcher = MicroBatcher(identify, max_batch=64)
        return await asyncio.gather(batcher.submit([1, 2, 3]), batcher.submit([7]), batcher.submit([8, 9]))

    first, second, third = run(scenario())
    assert [value for _, value in first] == [1, 2, 3] and second == [("result", 7)]
    assert [value for _, value in third] == [8, 9]


def test_the_maximum_batch_size_is_honoured_and_order_kept():
    async def scenario():
        batcher = MicroBatcher(identify, max_batch=4)
        answers = await asyncio.gather(*(batcher.submit([n] * (1 + n % 3)) for n in range(30)))
        return batcher, answers

    batcher, answers = run(scenario())
    assert max(batcher.batch_sizes) == 4 and sum(batcher.batch_sizes) == sum(1 + n % 3 for n in range(30))
    assert answers == [[("result", n)] * (1 + n % 3) for n in range(30)]


def test_a_request_larger_than_the_maximum_is_processed_in_chunks_of_it():
    calls = []

    def record(items):
        calls.append(len(items))
        return identify(items)

    results = run(MicroBatcher(record, max_batch=4).submit(list(range(10))))
    assert calls == [4, 4, 2] and results == [("result", n) for n in range(10)]


def test_by_default_a_lone_request_is_not_held_back():
    async def scenario():
        batcher = MicroBatcher(lambda items: items, max_batch=64, max_wait=0.0)
        started = time.perf_counter()
        await batcher.submit([3])
        return time.perf_counter() - started

    assert run(scenario()) < 0.05


def test_with_a_wait_a_batch_gathers_requests_that_arrive_within_it():
    async def scenario():
        batcher = MicroBatcher(identify, max_batch=64, max_wait=0.5)

        async def later(value, seconds):
            await asyncio.sleep(seconds)
            return await batcher.submit([value])

        started = time.perf_counter()
        await asyncio.gather(later(1, 0.0), later(2, 0.05))
        return batcher, time.perf_counter() - started

    batcher, seconds = run(scenario())
    assert list(batcher.batch_sizes) == [2] and seconds >= 0.5


def test_an_error_reaches_every_request_of_the_batch_and_the_batcher_goes_on():
    calls = []

    def fails_once(items):
        calls.append(len(items))
        if len(calls) == 1:
            raise RuntimeError("model failed")
        return items

    async def scenario():
        batcher = MicroBatcher(fails_once, max_batch=64)
        with pytest.raises(RuntimeError, match="model failed"):
            await batcher.submit([1])
        return await batcher.submit([5])

    assert run(scenario()) == [5]


def test_a_request_that_stops_waiting_has_its_queued_items_dropped_unrun():
    """A request past its deadline (its task cancelled) while its items wait behind a running
    batch: they are never processed, and the batcher stops counting them at once."""
    processed = []

    def record(items):
        processed.extend(items)
        time.sleep(0.05)
        return items

    async def scenario():
        batcher = MicroBatcher(record, max_batch=1)
        running = asyncio.create_task(batcher.submit(["running"]))
        await asyncio.sleep(0.01)  # the first batch is in the thread
        late = asyncio.create_task(batcher.submit(["late", "late"]))
        await asyncio.sleep(0)
        assert batcher.pending == 3
        late.cancel()
        await asyncio.gather(late, return_exceptions=True)
        assert batcher.pending == 1, "the cancelled items no longer count as queued"
        after = await batcher.submit(["after"])
        return await running, after, batcher

    running, after, batcher = run(scenario())
    assert processed == ["running", "after"] and (running, after) == (["running"], ["after"])
    assert batcher.pending == 0
