"""The gunicorn worker class (gunicorn.conf.py): uvicorn's, with a graceful drain, admission at
the door and a deadline for request headers.

- **Drain.** uvicorn stops accepting at once on SIGTERM and closes every connection whose request
  has not begun, so requests sent around a rolling restart are refused or reset. Here the first
  SIGTERM begins the app's drain instead (mnist_service.lifecycle): the worker goes on serving,
  not ready, for DRAIN_SECONDS; only then does uvicorn's own graceful shutdown run: it stops
  accepting, closes idle connections and waits for the requests in flight. A second SIGTERM, or
  SIGINT or SIGQUIT (gunicorn's quick stop), stops at once. While draining, every answer closes
  its connection.
- **Admission.** The app the worker serves is mnist_service.admission's door: at most
  MAX_IN_FLIGHT inference requests (POST) run at once, the next ones wait in line, and what cannot
  be served in time is shed with 503. The door counts a request in and out within its own ASGI
  call, so no way a connection ends can leave a slot taken.
- **Headers deadline.** uvicorn has no limit on how long a client may take to send its request
  headers (a slowloris holds a connection open by trickling them). A connection whose headers are
  not complete HEADERS_TIMEOUT_SECONDS after it opened, or after the first byte of its next
  request, gets 408 and is closed. The body's deadline is the app's (middleware.RequestLimits).
  Nor does httptools limit the headers' size: past MAX_HEADER_BYTES a request gets 431 and its
  connection is closed.
- **Pipelining.** uvicorn runs pipelined requests one after the other; when the client goes away,
  the request running is told so too (uvicorn tells only the last one parsed), so it does not
  write its answer to a closed connection.
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
from mnist_service.middleware import flush_access_log

# The most bytes of request headers (names, values and separators) a request may have: 32 KiB,
# nginx's default limit (large_client_header_buffers 4 x 8k).
MAX_HEADER_BYTES = 32 * 1024


class ServiceProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol (httptools), closing a connection whose headers come too slowly or
    are too large, telling the request running when its client goes away, writing each answer in
    one write, and closing connections while the worker drains. It overrides the parser's
    callbacks and protocol methods and sets the request cycle's ``keep_alive`` and
    ``disconnected``: internals of uvicorn, whose version is pinned (requirements/serve.txt) and
    whose seam tests/http/test_abuse.py, test_faults.py and test_operations.py cover."""

    def __init__(self, *args, headers_timeout: float, lifecycle: Lifecycle, **kwargs):
        super().__init__(*args, **kwargs)
        self.headers_timeout = headers_timeout
        self.lifecycle = lifecycle
        self._headers_timer = None
        self._header_bytes = 0
        self._running = None  # the cycle whose task runs (uvicorn's ``cycle`` is the last one parsed)

    def _arm(self) -> None:
        if self._headers_timer is None:
            self._headers_timer = self.loop.call_later(self.headers_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._headers_timer is not None:
            self._headers_timer.cancel()
            self._headers_timer = None

    def connection_made(self, transport) -> None:
        super().connection_made(CoalescedWrites(transport, self.loop))
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._arm()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > MAX_HEADER_BYTES:
            # httptools sets no limit: a client could make the worker hold any amount of headers
            self._refuse(431, "Request Header Fields Too Large", "Request headers too large",
                         f"the request headers are over {MAX_HEADER_BYTES} bytes")
            raise httptools.HttpParserCallbackError("headers too large")  # stops parsing this connection
        super().on_header(name, value)

    def data_received(self, data: bytes) -> None:
        if not self.transport.is_closing():  # nothing more is read from a connection refused above
            super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        if not self.transport.is_closing():  # uvicorn's 400 for the parse stopped above: answered already
            super().send_400_response(msg)

    def _start_asgi_task(self, cycle, app) -> None:
        self._running = cycle
        super()._start_asgi_task(cycle, app)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        if self.lifecycle.draining:
            self.cycle.keep_alive = False  # uvicorn answers with Connection: close

    def connection_lost(self, exc) -> None:
        self._disarm()
        # uvicorn marks only the last request parsed as disconnected; with requests pipelined behind
        # it, the one running would go on to write to the closed transport (an error logged each time)
        if self._running is not None and not self._running.response_complete:
            self._running.disconnected = True
            self._running.message_event.set()
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        self._headers_timer = None
        if not self.transport.is_closing():
            self._refuse(408, "Request Timeout", "Request headers too slow",
                         f"the request headers did not arrive within {self.headers_timeout:g} s "
                         "(HEADERS_TIMEOUT_SECONDS)")

    def _refuse(self, status: int, reason: str, title: str, detail: str) -> None:
        """Answer a problem at once, before the request reaches the app, and close the connection."""
        body = orjson.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/problem+json\r\ncontent-length: %d\r\n"
                             b"connection: close\r\n\r\n%s" % (status, reason.encode(), len(body), body))
        self.transport.close()


class CoalescedWrites:
    """A transport whose writes of one turn of the event loop go out as one: uvicorn writes an
    answer's headers and its body apart, two system calls (and two TCP segments) where one does.
    Everything else is the transport's own."""

    def __init__(self, transport, loop):
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self._flush)
        self._held.append(data)

    def _flush(self) -> None:
        held, self._held = self._held, []
        if held and not self._transport.is_closing():
            self._transport.write(b"".join(held))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name):
        return getattr(self._transport, name)


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
        metrics.QUEUED.set(self.door.queued)
        flush_access_log()
        return await super().on_tick(counter)


class ServiceWorker(UvicornWorker):
    """gunicorn's uvicorn worker, serving the app with :class:`DrainingServer` and
    :class:`ServiceProtocol`; both read their settings from the app (server.create_app)."""

    async def _serve(self) -> None:
        app = self.wsgi
        settings = app.settings
        max_wait = settings.max_queue_wait_ms / 1000
        door = Door(app, settings.max_in_flight, settings.max_queued, max_wait,
                    Shed(settings.max_in_flight, settings.max_queued, settings.max_queue_wait_ms))
        self.config.app = door
        self.config.http = functools.partial(
            ServiceProtocol, headers_timeout=settings.headers_timeout_seconds, lifecycle=app.lifecycle)
        server = DrainingServer(self.config, app.lifecycle, door)
        # gunicorn's quick stop (SIGINT or SIGQUIT to the master) sends SIGQUIT: stop now, no drain.
        asyncio.get_running_loop().add_signal_handler(signal.SIGQUIT, server.stop_now)
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
