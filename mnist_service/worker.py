"""The gunicorn worker class (gunicorn.conf.py): uvicorn's, with a graceful drain, load shedding
at the door and a deadline for request headers.

- **Drain.** uvicorn stops accepting at once on SIGTERM and closes every connection whose request
  has not begun, so requests sent around a rolling restart are refused or reset. Here the first
  SIGTERM begins the app's drain instead (mnist_service.lifecycle): the worker goes on serving,
  not ready, for DRAIN_SECONDS; only then does uvicorn's own graceful shutdown run: it stops
  accepting, closes idle connections and waits for the requests in flight. A second SIGTERM, or
  SIGINT or SIGQUIT (gunicorn's quick stop), stops at once. While draining, every answer closes
  its connection.
- **Shedding at the door.** An inference request (POST) that finds the worker holding
  MAX_IN_FLIGHT requests is answered 503 at once by mnist_service.admission, without the app.
- **Headers deadline.** uvicorn has no limit on how long a client may take to send its request
  headers (a slowloris holds a connection open by trickling them). A connection whose headers are
  not complete HEADERS_TIMEOUT_SECONDS after it opened, or after the first byte of its next
  request, gets 408 and is closed. The body's deadline is the app's (middleware.RequestLimits).
"""

from __future__ import annotations

import asyncio
import functools
import signal
import sys

import httptools
import orjson
from gunicorn.arbiter import Arbiter
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from mnist_service import metrics
from mnist_service.admission import Door, Shed
from mnist_service.lifecycle import Lifecycle


class ServiceProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol (httptools), closing a connection whose headers come too slowly,
    shedding what the worker cannot hold, and closing connections while the worker drains."""

    def __init__(self, *args, headers_timeout: float, door: Door, shed: Shed, lifecycle: Lifecycle, **kwargs):
        super().__init__(*args, **kwargs)
        self.headers_timeout = headers_timeout
        self.door = door
        self.shed = shed
        self.lifecycle = lifecycle
        self._headers_timer = None

    def _arm(self) -> None:
        if self._headers_timer is None:
            self._headers_timer = self.loop.call_later(self.headers_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._headers_timer is not None:
            self._headers_timer.cancel()
            self._headers_timer = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        if self.parser.get_method() == b"POST" and not self.door.admit():
            self._shed()
            return
        super().on_headers_complete()
        if self.lifecycle.draining:
            self.cycle.keep_alive = False  # uvicorn answers with Connection: close

    def _shed(self) -> None:
        """Answer this request 503 at once. Written here, without a task, a cycle or the app, it
        costs a fraction of an admitted request; the parser then drops its body (the stand-in cycle
        is complete). Behind a request still being answered (pipelining), or one whose client
        waits for 100-continue, it goes through uvicorn as an app instead, in order."""
        if (self.cycle is not None and not self.cycle.response_complete) or self.expect_100_continue:
            app, self.app = self.app, self.shed  # this request only: uvicorn runs self.app for it
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            return
        closing = self.lifecycle.draining or not self.parser.should_keep_alive()
        self.cycle = _Answered()
        self.transport.write(self.shed.answer(httptools.parse_url(self.url).path, closing))
        if closing:
            self.transport.close()
        else:
            self.on_response_complete()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        self._headers_timer = None
        if self.transport.is_closing():
            return
        body = orjson.dumps({
            "type": "about:blank", "title": "Request headers too slow", "status": 408,
            "detail": f"the request headers did not arrive within {self.headers_timeout:g} s "
                      "(HEADERS_TIMEOUT_SECONDS)"})
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/problem+json\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
        self.transport.close()


class _Answered:
    """Stands in for uvicorn's request cycle of a request the protocol answered itself."""

    response_complete = True
    disconnected = False
    message_event = asyncio.Event()  # connection_lost sets it; nothing waits on it


class DrainingServer(Server):
    """uvicorn's server, whose first SIGTERM begins the app's drain; it shuts down when the drain
    is over."""

    def __init__(self, config, lifecycle: Lifecycle, door: Door):
        super().__init__(config)
        self.lifecycle = lifecycle
        self.door = door

    def handle_exit(self, sig, frame) -> None:
        if sig == signal.SIGTERM and not self.lifecycle.draining and self.lifecycle.drain_seconds > 0:
            self.lifecycle.begin_drain()  # checked on the server's next tick (every 0.1 s)
            return
        super().handle_exit(sig, frame)

    def stop_now(self) -> None:
        self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self.lifecycle.drain_over():
            self.should_exit = True
        metrics.IN_FLIGHT.set(self.door.held)  # every 0.1 s: cheaper than per request
        return await super().on_tick(counter)


class ServiceWorker(UvicornWorker):
    """gunicorn's uvicorn worker, serving the app with :class:`DrainingServer` and
    :class:`ServiceProtocol`; both read their settings from the app (server.create_app)."""

    async def _serve(self) -> None:
        app = self.wsgi
        settings = app.settings
        door = Door(app, settings.max_in_flight)
        self.config.app = door
        self.config.http = functools.partial(
            ServiceProtocol, headers_timeout=settings.headers_timeout_seconds, lifecycle=app.lifecycle,
            door=door, shed=Shed(settings.max_in_flight))
        server = DrainingServer(self.config, app.lifecycle, door)
        # gunicorn's quick stop (SIGINT or SIGQUIT to the master) sends SIGQUIT: stop now, no drain.
        asyncio.get_running_loop().add_signal_handler(signal.SIGQUIT, server.stop_now)
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
