"""Dynamic micro-batching inside one worker: concurrent requests share one trip to a thread.

Each request hands its items (each uploaded image, opened, or TF Serving's tensors) to
:meth:`MicroBatcher.submit` and awaits its own results, one per item, in order. A single task per
model and worker takes what is queued, up to ``max_batch`` items, runs ``process`` once on all of
them in its own thread (the event loop keeps serving meanwhile), and gives each request its
results. ``process`` decodes every upload, normalises the readable ones together and runs the
model once on them (classifier.Classifier.classify), so decoding never blocks the event loop, and
a batch costs one hand-over between the event loop and a thread however many requests it holds.

While one batch runs, the next gathers by itself: requests that arrive meanwhile queue up and
form it. ``max_wait`` (default 0) makes a batch that is not full wait that long for more
requests before it runs; it delays a lone request by as much, so it is off by default. The
batcher knows how many items it holds and how long an item has recently taken, so a caller can
tell how long new items would wait (:meth:`MicroBatcher.expected_wait`) and shed them. A request
that stops waiting (its deadline passed) has its items taken out before they are decoded or run,
and they stop counting at once; items already in the running batch count until it ends.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass


class MicroBatcher:
    """Gathers concurrent submissions of one event loop into batched calls of ``process``, which
    takes a list of items and returns one result per item, in order; a batch holds at most
    ``max_batch`` items, and one that is not full waits up to ``max_wait`` seconds for more. The
    thread that runs ``process`` has the scheduling priority ``nice`` (0, the process's own, or
    higher: a lower priority)."""

    def __init__(self, process: Callable[[list], list], max_batch: int, max_wait: float = 0.0, nice: int = 0):
        self._process = process
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._queue: asyncio.Queue | None = None
        self._runner: asyncio.Task | None = None
        self._held: _Submission | None = None  # a submission that did not fit the last batch: it starts the next
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="batch", initializer=_lower_priority,
                                            initargs=(nice,))
        self.batch_sizes: deque[int] = deque(maxlen=1000)  # of the last batches, for tests
        self.pending = 0  # items queued or in the running batch
        self.seconds_per_item = 0.0  # moving average over the last batches

    def expected_wait(self) -> float:
        """Seconds until items submitted now would start: the items ahead of them times the recent
        time an item takes (0 when none is ahead)."""
        return self.pending * self.seconds_per_item

    async def submit(self, items: list) -> list:
        """The results for ``items`` (one each, in order), computed with whatever else is queued. A
        submission cancelled while it is queued (its request's deadline passed) is dropped unrun."""
        if self._runner is None or self._runner.done():
            self._queue, self._held = asyncio.Queue(), None
            self._runner = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")
        submission = _Submission(items, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(submission)
        self.pending += len(items)
        try:
            return await submission.future
        finally:
            if not submission.taken:  # dropped unrun: it no longer waits (a taken one counts until run)
                self.pending -= len(items)

    def _next_waiting(self) -> _Submission | None:
        """The next queued submission whose request still waits for it, or None."""
        while not self._queue.empty():
            submission = self._queue.get_nowait()
            if not submission.future.done():
                return submission
        return None

    async def _gather(self) -> list[_Submission]:
        """The next batch: at least one submission, then whatever is queued (waiting up to
        max_wait for more), up to max_batch items; submissions whose request stopped waiting for
        them (cancelled) are left out."""
        first = self._held
        self._held = None
        while first is None or first.future.done():
            first = await self._queue.get()
        batch = [first]
        count = len(first.items)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while count < self.max_batch:
            if (submission := self._next_waiting()) is None:
                if (left := deadline - loop.time()) <= 0:
                    break
                try:
                    submission = await asyncio.wait_for(self._queue.get(), left)
                except TimeoutError:
                    break
                if submission.future.done():
                    continue
            if count + len(submission.items) > self.max_batch:
                self._held = submission  # it starts the next batch
                break
            batch.append(submission)
            count += len(submission.items)
        batch = [submission for submission in batch if not submission.future.done()]
        for submission in batch:
            submission.taken = True
        return batch

    def _process_in_chunks(self, items: list) -> list:
        """``process`` on at most max_batch items at a time (a batch-route request may hold more)."""
        return [result for start in range(0, len(items), self.max_batch)
                for result in self._process(items[start : start + self.max_batch])]

    def _timed_process(self, items: list) -> tuple[list, float]:
        """The results of ``items`` and the seconds the thread took for them (timed in the thread:
        the event loop may take longer to come back to them)."""
        started = time.perf_counter()
        results = self._process_in_chunks(items)
        return results, time.perf_counter() - started

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            if not batch:
                continue
            items = [item for submission in batch for item in submission.items]
            self.batch_sizes.append(len(items))
            try:
                results, seconds = await loop.run_in_executor(self._executor, self._timed_process, items)
            except Exception as error:  # every request of the batch gets the error
                results, seconds = None, None
                for submission in batch:
                    if not submission.future.done():
                        submission.future.set_exception(error)
            finally:
                self.pending -= len(items)
            if results is None:
                continue
            # from 0, each batch moves the average by a tenth: the first, slow ones (cold caches) weigh
            # little, so a fresh worker does not shed what it can serve
            self.seconds_per_item += 0.1 * (seconds / len(items) - self.seconds_per_item)
            start = 0
            for submission in batch:
                if not submission.future.done():  # its request may have passed its deadline meanwhile
                    submission.future.set_result(results[start : start + len(submission.items)])
                start += len(submission.items)


@dataclass(eq=False)
class _Submission:
    """One request's items and the future its results go to; ``taken`` once a batch holds it."""

    items: list
    future: asyncio.Future
    taken: bool = False


def _lower_priority(nice: int) -> None:
    """Give the calling thread the niceness ``nice`` (Linux schedules threads by their own; raising
    it needs no privilege). Elsewhere the thread keeps the process's."""
    if nice:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except (AttributeError, OSError):
            pass
