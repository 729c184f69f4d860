"""ASGI middleware around the connexion app: request ids, the JSON access log, request metrics,
and each request's limits of size and time.

``RequestObserver`` sits outside connexion's exception handling, so it sees every final status,
and labels the metrics by the route's operationId (a template: never a raw path, which would make a
label of every model name a client sends); ``RequestLimits`` sits inside it, so its 413, 408 and 504
(mnist_service.errors) are rendered like any other error: problem JSON, or the ``{"error": ...}``
of the TF Serving (``/v1/``) and Open Inference Protocol (``/v2/``) routes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import sys
import time
from http import HTTPStatus

import orjson

from mnist_service import metrics
from mnist_service.errors import BodyTimedOut, RequestTimedOut, UploadTooLarge

REQUEST_ID_HEADER = b"x-request-id"
_SAFE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:/+=-]{1,128}$")


class BufferedLines(logging.StreamHandler):
    """A stream handler that writes its lines in one write a tenth of a second (or 256 lines)
    rather than one write each: under load, a write per request is a system call per request.
    ``flush`` writes what is held; the worker calls it every 0.1 s, logging at exit."""

    MAX_LINES = 256
    MAX_AGE = 0.1

    def __init__(self, stream):
        super().__init__(stream)
        self._lines: list[str] = []
        self._since = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        with self.lock:
            if not self._lines:
                self._since = time.monotonic()
            self._lines.append(line)
            due = len(self._lines) >= self.MAX_LINES or time.monotonic() - self._since >= self.MAX_AGE
        if due:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            lines, self._lines = self._lines, []
            if lines:
                self.stream.write("\n".join(lines) + "\n")
            if self.stream and hasattr(self.stream, "flush"):
                self.stream.flush()


access_log = logging.getLogger("mnist.access")
access_log.propagate = False
if not access_log.handlers:
    _handler = BufferedLines(sys.stdout)
    _handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.addHandler(_handler)
    access_log.setLevel(logging.INFO)


def flush_access_log() -> None:
    """Write out the access log's lines held (the worker calls it every 0.1 s)."""
    for handler in access_log.handlers:
        handler.flush()


def _new_request_id() -> bytes:
    """A random 128-bit id as 32 hex digits, like uuid4().hex, without its system call per request."""
    return b"%032x" % random.getrandbits(128)


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value
    return None


def log_line(entry: dict) -> str:
    """An access-log entry as one line of JSON, in ASCII when the request's path holds anything
    else: orjson writes U+2028, U+0085 and the like as they are, which many line readers (Python's
    ``splitlines``, among them) take for line breaks, splitting one entry in two."""
    line = orjson.dumps(entry)
    return line.decode() if line.isascii() else json.dumps(entry, separators=(",", ":"))


class RequestObserver:
    """Give each request an id (the client's X-Request-ID, or a new one), echo it back, log one
    JSON line per request and count it in the metrics."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        given = _header(scope, REQUEST_ID_HEADER)
        request_id = given if given and _SAFE_REQUEST_ID.match(given) else _new_request_id()
        status = 500
        # connexion's routing records the operation here; the scope is copied on the way in, but
        # shallowly, so a dict made now is the one it writes to.
        scope.setdefault("extensions", {})

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, request_id.decode(), status, time.perf_counter() - started)

    @staticmethod
    def _record(scope, request_id: str, status: int, seconds: float) -> None:
        routing = scope.get("extensions", {}).get("connexion_routing", {})
        route = routing.get("operation_id") or ("ui" if scope["path"].startswith("/ui") else "unrouted")
        metrics.requests_of(route, scope["method"], status).inc()
        metrics.latency_of(route).observe(seconds)
        if status >= 400:
            metrics.ERRORS.labels(kind=HTTPStatus(status).phrase).inc()
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "request_id": request_id,
            "method": scope["method"],
            "path": scope["path"],
            "route": route,
            "status": status,
            "latency_ms": round(seconds * 1000, 2),
        }
        digits = scope.get("state", {}).get("digits")
        if digits is not None:
            entry["digits"] = digits
        access_log.info(log_line(entry))


def _has_body(scope) -> bool:
    length = _header(scope, b"content-length")
    return _header(scope, b"transfer-encoding") is not None or (length is not None and length != b"0")


class RequestLimits:
    """Hold each request to its limits of size and time.

    - A body over ``max_bytes`` (MAX_UPLOAD_BYTES) is refused with 413: at once by its
      Content-Length, and while it streams in (chunked uploads), so it is never read into memory
      whole.
    - A body that has not fully arrived ``body_timeout`` seconds (BODY_TIMEOUT_SECONDS) after the
      headers gets 408: a client trickling its upload holds no worker for longer.
    - A request not answered ``request_timeout`` seconds (REQUEST_TIMEOUT_SECONDS) after its body
      arrived gets 504; what it waited for is cancelled (a model call already running finishes, and
      its result for this request is dropped).
    """

    def __init__(self, app, max_bytes: int, body_timeout: float, request_timeout: float):
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout
        self.request_timeout = request_timeout

    def _too_large(self, size: str) -> UploadTooLarge:
        return UploadTooLarge(f"the request body is {size} bytes; the limit is {self.max_bytes} (MAX_UPLOAD_BYTES)")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise self._too_large(declared.decode())
        received = 0
        body_done = not _has_body(scope)
        loop = asyncio.get_running_loop()
        deadline = asyncio.timeout(self.request_timeout if body_done else self.body_timeout)

        async def limited_receive():
            nonlocal received, body_done
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large(f"over {received}")
                if not message.get("more_body", False) and not body_done:
                    body_done = True
                    deadline.reschedule(loop.time() + self.request_timeout)
            return message

        try:
            async with deadline:
                await self.app(scope, limited_receive, send)
        except TimeoutError:
            if not deadline.expired():
                raise
            if body_done:
                raise RequestTimedOut(f"the request was not answered within {self.request_timeout:g} s of its "
                                      "body (REQUEST_TIMEOUT_SECONDS)") from None
            raise BodyTimedOut(f"the request body did not arrive within {self.body_timeout:g} s "
                               "(BODY_TIMEOUT_SECONDS)") from None
