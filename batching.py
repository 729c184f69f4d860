"""Dynamic micro-batching inside one worker: concurrent requests share one model call.

Each request hands its images to :meth:`MicroBatcher.predict` and awaits its own probabilities.
A single task per worker takes what is queued, up to ``max_batch`` images, runs the model once on
all of it in a thread (the event loop keeps serving meanwhile), and gives each request its rows.
While one batch runs, the next gathers by itself. Before running, the task waits up to
``max_wait`` seconds for more images, but only while requests that will bring some are being
decoded (:meth:`MicroBatcher.incoming`), so a lone request is never held back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# The most images in one model call, and how long to hold a batch for images still being decoded.
MAX_BATCH = int(os.environ.get("BATCH_MAX_SIZE", "64"))
MAX_WAIT_SECONDS = float(os.environ.get("BATCH_MAX_WAIT_MS", "2")) / 1000


class MicroBatcher:
    """Gathers concurrent predictions of one event loop into batched calls of ``predict``."""

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], max_batch: int = MAX_BATCH,
                 max_wait: float = MAX_WAIT_SECONDS):
        self._predict = predict
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._queue: asyncio.Queue | None = None
        self._runner: asyncio.Task | None = None
        self._incoming = 0
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="inference")
        self.batch_sizes: deque[int] = deque(maxlen=1000)  # of the last model calls, for tests

    @contextlib.contextmanager
    def incoming(self):
        """Mark a request that is decoding images it will hand to predict() soon."""
        self._incoming += 1
        try:
            yield
        finally:
            self._incoming -= 1
            self._arrived.set()

    async def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Probabilities (N, 10) for N images (uint8 (N, 28, 28)), computed with whatever else is
        queued at the time."""
        if self._runner is None or self._runner.done():
            self._queue = asyncio.Queue()
            self._runner = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((pixels, future))
        self._arrived.set()
        return await future

    async def _gather(self) -> list:
        """The next batch: at least one request, then whatever is queued, up to max_batch images,
        waiting up to max_wait for requests still decoding."""
        items = [await self._queue.get()]
        count = len(items[0][0])
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while count < self.max_batch:
            if not self._queue.empty():
                pixels, future = self._queue.get_nowait()
                if count + len(pixels) > self.max_batch:
                    self._queue.put_nowait((pixels, future))  # it starts the next batch
                    break
                items.append((pixels, future))
                count += len(pixels)
                continue
            left = deadline - asyncio.get_running_loop().time()
            if self._incoming == 0 or left <= 0:
                break
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
        return items

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._gather()
            batch = np.concatenate([pixels for pixels, _ in items])
            self.batch_sizes.append(len(batch))
            try:
                probabilities = await loop.run_in_executor(self._executor, self._predict, batch)
            except Exception as error:  # every request of the batch gets the error
                for _, future in items:
                    if not future.done():
                        future.set_exception(error)
                continue
            start = 0
            for pixels, future in items:
                if not future.done():  # the client may have gone away
                    future.set_result(probabilities[start : start + len(pixels)])
                start += len(pixels)
