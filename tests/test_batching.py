"""Micro-batching in a worker: concurrent requests share model calls and each gets its own rows."""

import asyncio
import time

import numpy as np
import pytest

from batching import MicroBatcher


def identify(batch: np.ndarray) -> np.ndarray:
    """A stand-in model whose 'probabilities' are each image's first pixel, so answers can be traced."""
    time.sleep(0.01)  # long enough for the next requests to queue up behind a running batch
    return batch[:, :1, 0].astype(np.float64)


def images(*values: int) -> np.ndarray:
    return np.stack([np.full((28, 28), value, np.uint8) for value in values])


def run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer():
    async def scenario():
        batcher = MicroBatcher(identify, max_batch=64, max_wait=0.002)
        answers = await asyncio.gather(*(batcher.predict(images(n)) for n in range(40)))
        return batcher, answers

    batcher, answers = run(scenario())
    assert [int(a[0, 0]) for a in answers] == list(range(40)), "no cross-talk between requests"
    assert max(batcher.batch_sizes) > 1 and sum(batcher.batch_sizes) == 40


def test_a_request_of_several_images_gets_its_rows_in_order():
    async def scenario():
        batcher = MicroBatcher(identify)
        return await asyncio.gather(batcher.predict(images(1, 2, 3)), batcher.predict(images(7)), batcher.predict(images(8, 9)))

    first, second, third = run(scenario())
    assert first[:, 0].tolist() == [1, 2, 3] and second[:, 0].tolist() == [7] and third[:, 0].tolist() == [8, 9]


def test_the_maximum_batch_size_is_honoured():
    async def scenario():
        batcher = MicroBatcher(identify, max_batch=4, max_wait=0.002)
        answers = await asyncio.gather(*(batcher.predict(images(n)) for n in range(30)))
        return batcher, answers

    batcher, answers = run(scenario())
    assert max(batcher.batch_sizes) == 4 and sum(batcher.batch_sizes) == 30
    assert [int(a[0, 0]) for a in answers] == list(range(30))


def test_a_lone_request_is_not_held_back():
    async def scenario():
        batcher = MicroBatcher(lambda batch: batch[:, :1, 0], max_batch=64, max_wait=0.5)
        started = time.perf_counter()
        await batcher.predict(images(3))
        return time.perf_counter() - started

    assert run(scenario()) < 0.25, "nothing else is decoding, so the batch does not wait max_wait"


def test_the_batch_waits_for_requests_still_decoding():
    async def scenario():
        batcher = MicroBatcher(identify, max_batch=64, max_wait=0.5)

        async def slow_request(value, decode_seconds):
            with batcher.incoming():
                await asyncio.sleep(decode_seconds)
            return await batcher.predict(images(value))

        await asyncio.gather(slow_request(1, 0.0), slow_request(2, 0.05))
        return batcher

    assert list(run(scenario()).batch_sizes) == [2]


def test_a_model_error_reaches_every_request_of_the_batch_and_the_batcher_goes_on():
    calls = []

    def fails_once(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("model failed")
        return batch[:, :1, 0]

    async def scenario():
        batcher = MicroBatcher(fails_once, max_wait=0.0)
        with pytest.raises(RuntimeError, match="model failed"):
            await batcher.predict(images(1))
        return await batcher.predict(images(5))

    assert run(scenario())[0, 0] == 5
