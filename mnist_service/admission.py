"""Admission at the door of each worker: at most MAX_IN_FLIGHT inference requests run at once, the
next ones wait in line for a slot, and what cannot be served in time is shed (:class:`Door`), with
the answer :class:`Shed` makes.

A worker answers on one event loop, so every request it runs makes the others slower. The door
is the outermost ASGI app of the worker (mnist_service.worker): an inference request (POST) takes
a slot when it starts and gives it back when its app returns, in the same ``try``/``finally``,
so however a request or its connection ends (pipelined requests never started, a reset mid-body,
a deadline, the drain), the count cannot leak. GET routes (health probes, metrics, metadata)
never wait and are never shed.

Past MAX_IN_FLIGHT a request waits in line (first come, first served; a freed slot passes straight
to the first in line) rather than being answered 503 at once. Under overload this is what keeps the
workers' time on the requests they admitted: a closed-loop client that is refused at once sends
again at once, so refusing every excess request costs the worker more than serving them, and its
goodput collapses. A waiting request costs its parsed headers and what has arrived of its body
(uvicorn stops reading it past 64 KiB). A request is shed (503, ``Retry-After``, a problem or the protocol's
``{"error": ...}``, counted in ``mnist_shed_requests_total{reason="in_flight"}``) when the line
holds MAX_QUEUED requests, when the line's expected wait is already over MAX_QUEUE_WAIT_MS (the
requests ahead times the recent time a request holds its slot, over the slots), or when it has
waited MAX_QUEUE_WAIT_MS without a slot. Behind the door, each model's queue sheds what it could
not start in time (classifier.Classifier.submit).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

import orjson

from mnist_service import metrics
from mnist_service.errors import Overloaded, problem

# The routes whose protocols answer errors as {"error": ...}: TF Serving's, the Open Inference Protocol's.
PROTOCOL_PREFIXES = ("/v1/", "/v2/")


class Door:
    """The worker's app behind a door that holds at most ``max_in_flight`` inference requests
    (POST) at once (``held``), lets at most ``max_queued`` more wait (``queued``) for up to
    ``max_wait`` seconds, and answers the rest with ``shed``."""

    def __init__(self, app, max_in_flight: int, max_queued: int, max_wait: float, shed: Shed):
        self.app = app
        self.max_in_flight = max_in_flight
        self.max_queued = max_queued
        self.max_wait = max_wait
        self.shed = shed
        self.held = 0
        self._line: deque[asyncio.Future] = deque()
        self.seconds_held = 0.0  # moving average of how long a request holds its slot

    @property
    def queued(self) -> int:
        """Requests waiting in line for a slot."""
        return len(self._line)

    def expected_wait(self) -> float:
        """Seconds a request joining the line now would wait for a slot (0 while one is free)."""
        if self.held < self.max_in_flight:
            return 0.0
        return (len(self._line) + 1) * self.seconds_held / self.max_in_flight

    async def __call__(self, scope, receive, send):
        if scope.get("method") != "POST":  # lifespan and GET routes pass as they are
            return await self.app(scope, receive, send)
        if self.held < self.max_in_flight and not self._line:
            self.held += 1
        elif not await self._wait_for_slot():
            return await self.shed(scope, receive, send)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await self.app(scope, receive, send)
        finally:
            # from 0, each request moves the average by a hundredth: a few slow ones (a large upload)
            # do not make the line look long
            self.seconds_held += 0.01 * (loop.time() - started - self.seconds_held)
            self._release()

    async def _wait_for_slot(self) -> bool:
        """Wait in line until a slot is handed over (True, counted in ``held``), or give up (False)
        when the line is full, its wait too long, or ``max_wait`` passes."""
        if len(self._line) >= self.max_queued or self.expected_wait() > self.max_wait:
            return False
        slot = asyncio.get_running_loop().create_future()
        self._line.append(slot)
        try:
            async with asyncio.timeout(self.max_wait):
                await slot
            return True
        except TimeoutError:
            # the slot may have been handed over in the same tick as the timeout: then it is ours
            return slot.done() and not slot.cancelled()
        except asyncio.CancelledError:
            if slot.done() and not slot.cancelled():
                self._release()
            raise
        finally:
            if slot.cancelled() or not slot.done():  # gave up: out of the line
                slot.cancel()
                with contextlib.suppress(ValueError):  # already taken out by _release
                    self._line.remove(slot)

    def _release(self) -> None:
        """Give a slot back: to the first request waiting in line, else to the door. (A request that
        gave up has its future cancelled at once, but leaves the line only when its task resumes.)"""
        while self._line:
            slot = self._line.popleft()
            if not slot.done():
                slot.set_result(None)  # the slot passes over: ``held`` stays as it is
                return
        self.held -= 1


class Shed:
    """The answer to a request shed at the door, as an ASGI app: 503, ``Retry-After``, and a
    problem; on TF Serving's ``/v1/`` routes and the Open Inference Protocol's ``/v2/`` routes,
    their ``{"error": ...}``. Made once: a shed answer must cost next to nothing."""

    def __init__(self, max_in_flight: int, max_queued: int, max_wait_ms: float):
        error = Overloaded(
            f"the worker runs {max_in_flight} requests (MAX_IN_FLIGHT) and this one could not get a slot within "
            f"{max_wait_ms:g} ms (MAX_QUEUE_WAIT_MS) or behind {max_queued} waiting (MAX_QUEUED); retry in a "
            "second (another worker or replica may answer at once)")
        self.status = error.status
        self._answers = {}
        for protocol, body, content_type in ((True, {"error": str(error)}, b"application/json"),
                                             (False, problem(error), b"application/problem+json")):
            content = orjson.dumps(body)
            self._answers[protocol] = (
                [(b"content-type", content_type), (b"content-length", b"%d" % len(content)),
                 (b"retry-after", Overloaded.headers["Retry-After"].encode())], content)
        self._counted = metrics.SHED.labels(reason="in_flight")

    def answer(self, path: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """The headers and body of the shed answer to a request for ``path``."""
        return self._answers[path.startswith(PROTOCOL_PREFIXES)]

    async def __call__(self, scope, receive, send):
        self._counted.inc()
        headers, content = self.answer(scope["path"])
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": content, "more_body": False})
