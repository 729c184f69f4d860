"""A worker's lifecycle as the app sees it: serving, then draining once it is asked to stop.

gunicorn stops gracefully by sending SIGTERM to each worker; the worker (mnist_service.worker)
then calls :meth:`Lifecycle.begin_drain`. From that moment ``/health/ready`` answers 503, so load
balancers and Kubernetes stop sending, and every answer closes its connection, so clients with
keep-alive connections open new ones elsewhere; the worker keeps serving whatever still arrives
for ``drain_seconds`` (DRAIN_SECONDS). Then it stops accepting, finishes every request it
accepted, and exits.
"""

from __future__ import annotations

import time


class Lifecycle:
    """Whether this worker is draining, and since when; ``drain_seconds`` is how long it lasts."""

    def __init__(self, drain_seconds: float):
        self.drain_seconds = drain_seconds
        self.draining_since: float | None = None  # time.monotonic() of the SIGTERM

    @property
    def draining(self) -> bool:
        return self.draining_since is not None

    def begin_drain(self) -> None:
        if self.draining_since is None:
            self.draining_since = time.monotonic()

    def drain_over(self) -> bool:
        """Whether the drain began and has lasted its full period."""
        return self.draining and time.monotonic() - self.draining_since >= self.drain_seconds
