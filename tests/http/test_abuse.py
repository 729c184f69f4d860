"""The real gunicorn gets over raw-socket abuse (tests/abuse.py): after each case of the corpus,
with the server otherwise idle, it holds nothing (``mnist_requests_in_flight`` back to 0), is
ready, and serves 8 keep-alive connections at once without shedding a request.

One server serves the module, with short deadlines (headers and body 1 s, processing 3 s) so that
what a case left behind times out quickly; a case that leaves it broken has it replaced, so that
each case is judged on a server no other case broke.
"""

from __future__ import annotations

import contextlib

import httpx
import pytest

from tests.abuse import CASES, SETTLE_CONNECTIONS, SETTLE_REQUESTS, settle_and_check
from tests.conftest import Server, gunicorn, wait_until_ready

DEADLINES = {"HEADERS_TIMEOUT_SECONDS": "1", "BODY_TIMEOUT_SECONDS": "1", "REQUEST_TIMEOUT_SECONDS": "3"}
# Long enough for whatever a case left to pass its deadline (body 1 s + processing 3 s) and for
# the workers' next sample of the gauge.
SETTLE_SECONDS = 6


class Servers:
    """The module's server, started on first use and again after a case left it broken."""

    def __init__(self, small_models, folder):
        self.small_models, self.folder = small_models, folder
        self.stack = contextlib.ExitStack()
        self.running: Server | None = None

    def current(self) -> Server:
        if self.running is None:
            started = self.stack.enter_context(gunicorn(self.small_models, self.folder, workers=2, **DEADLINES))
            try:
                wait_until_ready(started)
            except BaseException:
                self.stack.close()  # the next case tries a new one rather than this one that never got ready
                raise
            self.running = started
        return self.running

    def discard(self) -> None:
        self.stack.close()
        self.running = None


@pytest.fixture(scope="module")
def servers(small_models, tmp_path_factory):
    running = Servers(small_models, tmp_path_factory.mktemp("abuse"))
    yield running
    running.discard()


@pytest.mark.parametrize("case", CASES)
def test_the_server_gets_over_abuse(servers, case):
    server = servers.current()
    url = httpx.URL(server.url)
    CASES[case](url.host, url.port)
    settled = settle_and_check(server.url, timeout=SETTLE_SECONDS)
    exited = server.process.poll()
    if not settled.passed or exited is not None:
        servers.discard()  # the next case gets a server this one did not break
    assert exited is None, f"after {case}: gunicorn exited ({exited})\n{server.log_text()[-3000:]}"
    assert settled.in_flight == 0, (
        f"after {case}: mnist_requests_in_flight is {settled.in_flight} {SETTLE_SECONDS} s later, not 0 "
        f"(requests held that no one waits for); then {settled}")
    assert settled.ready == 200, f"after {case}: /health/ready answered {settled.ready}, not 200; {settled}"
    assert settled.shed == 0, (
        f"after {case}: {settled.shed} of {SETTLE_CONNECTIONS * SETTLE_REQUESTS} requests of "
        f"{SETTLE_CONNECTIONS} connections at once were shed (503); {settled}")
    assert settled.passed, f"after {case}: not every request of {SETTLE_CONNECTIONS} connections got 200; {settled}"
