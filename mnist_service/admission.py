"""Load shedding at the door of each worker: the count of what it holds (:class:`Door`) and the
answer a request gets when it already holds as many as it may (:class:`Shed`).

A worker answers on one event loop, so every request it holds makes the others slower. Rather
than hold requests without bound (and answer everyone late), the worker's HTTP protocol
(mnist_service.worker) admits an inference request (POST) only while the worker holds fewer than
MAX_IN_FLIGHT requests; one more is answered the moment its headers are read, written whole by
the protocol, without a task or the app: 503 with ``Retry-After`` and a problem (``{"error": ...}``
on the TF Serving and Open Inference Protocol routes), counted in ``mnist_shed_requests_total``. Passing the app by
matters under overload: a shed answer then costs a small fraction of an admitted request, so more
of the worker's time goes to the requests it admitted. GET routes (health probes, metrics, metadata) are
never shed. Behind the door, each model's queue sheds what it could not start in time
(classifier.Classifier.submit, MAX_QUEUE_WAIT_MS).
"""

from __future__ import annotations

import orjson

from mnist_service import metrics
from mnist_service.errors import Overloaded, problem

RETRY_AFTER = Overloaded.headers["Retry-After"]
# The routes whose protocols answer errors as {"error": ...}: TF Serving's, the Open Inference Protocol's.
PROTOCOL_PREFIXES = ("/v1/", "/v2/")


class Door:
    """The app, counting the inference requests (POST) the worker holds: the protocol counts one
    in when it admits it (:meth:`admit`), and it counts itself out when answered."""

    def __init__(self, app, max_in_flight: int):
        self.app = app
        self.max_in_flight = max_in_flight
        self.held = 0

    def admit(self) -> bool:
        """Whether one more inference request may come in (and if so, it is counted)."""
        if self.held >= self.max_in_flight:
            return False
        self.held += 1
        return True

    async def __call__(self, scope, receive, send):
        try:
            await self.app(scope, receive, send)
        finally:
            if scope.get("method") == "POST":
                self.held -= 1


class Shed:
    """The answer to a request shed at the door, written whole by the worker's HTTP protocol: 503,
    ``Retry-After``, and a problem; on TF Serving's ``/v1/`` routes and the Open Inference
    Protocol's ``/v2/`` routes, their ``{"error": ...}``."""

    def __init__(self, max_in_flight: int):
        error = Overloaded(f"the worker holds {max_in_flight} requests, its limit (MAX_IN_FLIGHT); retry in a "
                           "second (another worker or replica may answer at once)")
        self.status = error.status
        self._answers = {}
        for protocol, body, content_type in ((True, {"error": str(error)}, b"application/json"),
                                             (False, problem(error), b"application/problem+json")):
            content = orjson.dumps(body)
            self._answers[protocol] = (
                [(b"content-type", content_type), (b"content-length", b"%d" % len(content)),
                 (b"retry-after", RETRY_AFTER.encode())], content)
        self._counted = metrics.SHED.labels(reason="in_flight")

    def answer(self, path: bytes, closing: bool) -> bytes:
        """The whole HTTP/1.1 response for a request to ``path``, counted; ``closing`` adds
        ``Connection: close``."""
        self._counted.inc()
        headers, content = self._answers[path.decode("latin-1").startswith(PROTOCOL_PREFIXES)]
        lines = [b"HTTP/1.1 503 Service Unavailable", *(name + b": " + value for name, value in headers)]
        if closing:
            lines.append(b"connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n" + content

    async def __call__(self, scope, receive, send):
        """The same answer as an ASGI app, for a request that cannot be answered on the spot."""
        self._counted.inc()
        headers, content = self._answers[scope["path"].startswith(PROTOCOL_PREFIXES)]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": content, "more_body": False})
