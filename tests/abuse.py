"""A corpus of raw-socket abuse of the real server, and the check that it got over each one.

Each case of :data:`CASES` is a function of the server's host and port that abuses its HTTP/1.1
handling with plain :mod:`socket` connections, the way a broken client, a scanner or an attacker
would: deep pipelining closed unread, pipelining mixed with malformed requests, connections closed
or reset in the middle of a request, half-closed connections, trickled and flooded headers, absurd
chunk sizes and Content-Lengths, HTTP/1.0 keep-alive, bare-LF line endings, ``Expect:
100-continue`` without a body, and a CL.TE smuggling attempt. Each case is bounded in time (every
socket has a timeout, every loop a count or a deadline: a few seconds a case), tolerates whatever
the server answers or whether it resets the connection, and closes its sockets. A case checks
nothing itself: what matters is the state the server is left in, which :func:`settle_and_check`
measures once the server is otherwise idle: nothing held (``mnist_requests_in_flight`` back to 0),
ready, and serving 8 keep-alive connections at once without shedding a request.

Only the standard library and httpx are used, so that tools (tools/faults.py's ``abuse``
scenario) can import the corpus as tests/http/test_abuse.py does.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import re
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

SAMPLE = Path(__file__).resolve().parent.parent / "var" / "data" / "sample-7.png"
CLASSIFY = "/mnist/classify"
BOUNDARY = "abusecorpusboundary"
SOCKET_TIMEOUT = 3.0  # each send or receive of a case; a case's reads have shorter deadlines of their own
ANSWER_SECONDS = 3.0  # how long a case waits for the answers it reads
SETTLE_CONNECTIONS, SETTLE_REQUESTS = 8, 10  # settle_and_check's load: connections at once, requests on each


# --- requests ------------------------------------------------------------------------------------

@functools.cache
def upload() -> bytes:
    """The multipart/form-data body of a real upload: the sample 7 as the ``file`` part."""
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"7.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n".encode() + SAMPLE.read_bytes() + f"\r\n--{BOUNDARY}--\r\n".encode())


def head(*headers: str, method: str = "POST", path: str = CLASSIFY, version: str = "HTTP/1.1",
         eol: bytes = b"\r\n") -> bytes:
    """A request's line and headers, ending with the empty line; ``eol`` ends every line."""
    lines = [f"{method} {path} {version}", "Host: 127.0.0.1", *headers]
    return b"".join(line.encode("latin-1") + eol for line in lines) + eol


def post(*headers: str, body: bytes | None = None, version: str = "HTTP/1.1", eol: bytes = b"\r\n") -> bytes:
    """A whole multipart POST of ``body`` (the sample upload by default) to /mnist/classify, its
    Content-Length right, ``headers`` added."""
    body = upload() if body is None else body
    return head(f"Content-Type: multipart/form-data; boundary={BOUNDARY}", f"Content-Length: {len(body)}",
                *headers, version=version, eol=eol) + body


def multipart_head(*headers: str) -> bytes:
    """A POST's line and headers with the multipart Content-Type, the framing headers left to the caller."""
    return head(f"Content-Type: multipart/form-data; boundary={BOUNDARY}", *headers)


def chunked(body: bytes, size: int = 100) -> bytes:
    """``body`` in chunks of ``size`` bytes, with the last chunk but no trailer's end."""
    return b"".join(b"%x\r\n%s\r\n" % (len(body[n:n + size]), body[n:n + size])
                    for n in range(0, len(body), size)) + b"0\r\n"


# --- sockets -------------------------------------------------------------------------------------

@contextlib.contextmanager
def connection(host: str, port: int) -> Iterator[socket.socket]:
    """A new TCP connection to the server, every operation bounded by SOCKET_TIMEOUT; closed at the end."""
    sock = socket.create_connection((host, port), timeout=SOCKET_TIMEOUT)
    try:
        yield sock
    finally:
        sock.close()


def send(sock: socket.socket, data: bytes) -> bool:
    """Send ``data``; False when the server had closed or reset the connection (a fair answer to abuse)."""
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


def read_until_closed(sock: socket.socket, seconds: float = ANSWER_SECONDS) -> bytes:
    """What the server writes until it closes the connection, resets it, or ``seconds`` pass."""
    deadline, received = time.monotonic() + seconds, b""
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except OSError:  # a timeout or a reset
            break
        if not data:
            break
        received += data
    return received


def read_answer(sock: socket.socket, seconds: float = ANSWER_SECONDS) -> int | None:
    """Read one whole answer (its head, and a body of its Content-Length): its status, None when
    the connection ended or ``seconds`` passed first. Interim 1xx answers are skipped."""
    deadline, buffered = time.monotonic() + seconds, b""

    def more() -> bool:
        nonlocal buffered
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except OSError:
            return False
        buffered += data
        return bool(data)

    while True:
        while b"\r\n\r\n" not in buffered:
            if not more():
                return None
        answer_head, buffered = buffered.split(b"\r\n\r\n", 1)
        status_line = re.match(rb"HTTP/1\.[01] (\d{3})", answer_head)
        if status_line is None:
            return None
        status = int(status_line.group(1))
        if 100 <= status < 200:
            continue
        length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", answer_head)
        while length and len(buffered) < int(length.group(1)):
            if not more():
                return None
        return status


def reset(sock: socket.socket) -> None:
    """Close with a TCP RST instead of a FIN: SO_LINGER on, with a linger time of 0."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def in_threads(count: int, target: Callable[[], None], seconds: float = 30) -> None:
    """Run ``target`` in ``count`` threads at once and wait for them (at most ``seconds``: each
    target is bounded by its sockets' timeouts, this only guards against a case's own mistake)."""
    threads = [threading.Thread(target=target, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + seconds
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def each_on_its_own(host: str, port: int, requests: list[bytes], seconds: float = ANSWER_SECONDS) -> None:
    """Send each of ``requests`` on a connection of its own, read what comes back until the server
    closes it (or ``seconds`` pass), then close."""
    for request in requests:
        with connection(host, port) as sock:
            if send(sock, request):
                read_until_closed(sock, seconds)


# --- the cases -----------------------------------------------------------------------------------

def deep_pipelining(host: str, port: int) -> None:
    """16 POSTs pipelined on one connection, closed without reading a byte; 30 times from each of
    16 threads at once. The server admits requests it has parsed but not begun (uvicorn queues
    them behind the first): closing the connection must drop them from what the worker holds."""
    sixteen = post() * 16

    def client():
        for _ in range(30):
            with connection(host, port) as sock:
                send(sock, sixteen)

    in_threads(16, client)


def pipelining_with_malformed(host: str, port: int) -> None:
    """Valid POSTs pipelined with a garbage request line, a header line without a colon, a header
    name with a space and a NUL in a header, each closed without reading: the parser's error (400,
    connection closed) comes while valid requests are still queued behind the first."""
    valid = post()
    malformed = [
        b"GARBAGE\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32 + b"\r\n\r\n",  # a TLS ClientHello's start
        head("This header has no colon") + upload(),
        post("Bad Name: space in the header's name"),
        post("X-Nul: before\x00after"),
    ]
    mixes = [valid + bad + valid * 3 for bad in malformed] + [valid * 3 + bad + valid for bad in malformed]

    def client():
        for mix in mixes:
            with connection(host, port) as sock:
                send(sock, mix)

    in_threads(4, client)


def early_close(host: str, port: int) -> None:
    """A connection closed part of the way through its request: within the request line, within the
    headers, right after them, and half-way through the body; each 10 times."""
    whole = post()
    body_starts = whole.index(b"\r\n\r\n") + 4
    cuts = [8, 40, body_starts, body_starts + len(upload()) // 2]
    for _ in range(10):
        for cut in cuts:
            with connection(host, port) as sock:
                send(sock, whole[:cut])
                time.sleep(0.01)  # the server has read the part before the close


def rst_mid_body(host: str, port: int) -> None:
    """A connection reset (RST, not FIN) while its body is half sent: a small upload, and a large
    declared body (1 MB) of which 64 KiB were sent; each 10 times."""
    whole = post()
    half = whole[: whole.index(b"\r\n\r\n") + 4 + len(upload()) // 2]
    large = multipart_head(f"Content-Length: {1 << 20}") + b"x" * (64 << 10)
    for _ in range(10):
        for partial in (half, large):
            sock = socket.create_connection((host, port), timeout=SOCKET_TIMEOUT)
            try:
                send(sock, partial)
                time.sleep(0.02)
            finally:
                reset(sock)


def half_close(host: str, port: int) -> None:
    """A whole request, then the client's side shut (SHUT_WR) and the answer read if one comes: one
    request, and two pipelined; each 5 times."""
    for _ in range(5):
        for requests in (post(), post() * 2):
            with connection(host, port) as sock:
                if send(sock, requests):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)
                    read_until_closed(sock)


def trickled_headers(host: str, port: int) -> None:
    """Slowloris: 8 connections at once trickle a request's line and headers 3 bytes every 0.1 s and
    stop after 2 s (before the end of the headers); then 8 send a request line and one header and
    nothing more, and wait for the server to give up on them."""
    request = post("X-Padding: " + "p" * 200)

    def trickle():
        with connection(host, port) as sock:
            stop = time.monotonic() + 2
            for offset in range(0, len(request), 3):
                if time.monotonic() > stop or not send(sock, request[offset:offset + 3]):
                    break
                time.sleep(0.1)
            read_until_closed(sock, 0.5)

    def stall():
        with connection(host, port) as sock:
            if send(sock, b"POST /mnist/classify HTTP/1.1\r\nHost: 127.0.0.1\r\n"):
                read_until_closed(sock)

    in_threads(8, trickle)
    in_threads(8, stall)


def header_flood(host: str, port: int) -> None:
    """Requests with 1000 headers; one header of 64 KiB; one of 1 MiB; 4000 headers of 256 bytes
    (1 MiB); and 500 repeats of one header name: each a whole, otherwise valid upload."""
    each_on_its_own(host, port, [
        post(*(f"X-Flood-{n}: {n}" for n in range(1000)), "Connection: close"),
        post("X-Long: " + "a" * (64 << 10), "Connection: close"),
        post("X-Huge: " + "b" * (1 << 20), "Connection: close"),
        post(*(f"X-Wide-{n}: {'c' * 256}" for n in range(4000)), "Connection: close"),
        post(*(["Cookie: a=b"] * 500), "Connection: close"),
    ])


def chunk_size_abuse(host: str, port: int) -> None:
    """Chunked bodies with a chunk size over 64 bits, one of 2**63 - 1 (its data never comes), a
    negative one, one not in hex, an empty one, chunk extensions (valid, and one of 64 KiB), and
    trailers (valid, and a flood of them) after a valid body."""
    body = upload()
    te = multipart_head("Transfer-Encoding: chunked", "Connection: close")
    each_on_its_own(host, port, [
        te + b"FFFFFFFFFFFFFFFFFFFFFFFF\r\n" + body + b"\r\n0\r\n\r\n",
        te + b"7FFFFFFFFFFFFFFF\r\n" + body,
        te + b"-1\r\n" + body + b"\r\n0\r\n\r\n",
        te + b"zz\r\n" + body + b"\r\n0\r\n\r\n",
        te + b"\r\n" + body + b"\r\n0\r\n\r\n",
        te + b"".join(b"%x;name=value;quoted=\"v\"\r\n%s\r\n" % (len(body[n:n + 64]), body[n:n + 64])
                      for n in range(0, len(body), 64)) + b"0;last\r\n\r\n",
        te + b"%x;ext=%s\r\n%s\r\n0\r\n\r\n" % (len(body), b"e" * (64 << 10), body),
        te + chunked(body) + b"X-Checksum: 42\r\nX-Other: 1\r\n\r\n",
        te + chunked(body) + b"".join(b"X-Trailer-%d: %d\r\n" % (n, n) for n in range(1000)) + b"\r\n",
    ])


def absurd_content_length(host: str, port: int) -> None:
    """Content-Lengths of 10**30, 10**18 (its body never comes), -1, text, a list, two headers that
    disagree, and one shorter than the body sent (the rest reads as a next, malformed request)."""
    body = upload()
    each_on_its_own(host, port, [
        multipart_head(f"Content-Length: {10 ** 30}", "Connection: close") + body,
        multipart_head(f"Content-Length: {10 ** 18}", "Connection: close") + body,
        multipart_head("Content-Length: -1", "Connection: close") + body,
        multipart_head("Content-Length: abc", "Connection: close") + body,
        multipart_head(f"Content-Length: {len(body)}, {len(body)}", "Connection: close") + body,
        multipart_head(f"Content-Length: {len(body)}", f"Content-Length: {len(body) + 10}",
                       "Connection: close") + body,
        multipart_head(f"Content-Length: {len(body) // 2}") + body,
    ])


def http10_keep_alive(host: str, port: int) -> None:
    """HTTP/1.0 with ``Connection: keep-alive``: 5 requests one after the other on one connection,
    each answer read before the next is sent (until the server closes it); then 5 pipelined at
    once, the answers read until the server closes the connection."""
    request = post("Connection: keep-alive", version="HTTP/1.0")
    with connection(host, port) as sock:
        for _ in range(5):
            if not send(sock, request) or read_answer(sock) is None:
                break
    with connection(host, port) as sock:
        if send(sock, request * 5):
            read_until_closed(sock)


def bare_lf(host: str, port: int) -> None:
    """Line endings of a bare LF instead of CRLF: in the head only, in the multipart body too, and
    two such requests pipelined; the answers read."""
    lf_body = upload().replace(b"\r\n", b"\n")
    each_on_its_own(host, port, [
        post("Connection: close", eol=b"\n"),
        post("Connection: close", body=lf_body, eol=b"\n"),
        post(eol=b"\n") + post("Connection: close", eol=b"\n"),
    ])


def expect_continue_without_body(host: str, port: int) -> None:
    """``Expect: 100-continue`` and then no body: closed after 0.3 s, 10 times; and 4 connections
    that wait (up to 3 s) for whatever the server does about the body that never comes."""
    request = multipart_head(f"Content-Length: {len(upload())}", "Expect: 100-continue")
    for _ in range(10):
        with connection(host, port) as sock:
            send(sock, request)
            time.sleep(0.3)

    def wait():
        with connection(host, port) as sock:
            if send(sock, request):
                read_until_closed(sock)

    in_threads(4, wait)


def smuggling(host: str, port: int) -> None:
    """Request smuggling, CL.TE: Content-Length and ``Transfer-Encoding: chunked`` together, the body
    an empty chunked body followed by a second POST (which a front end reading Content-Length never
    saw), then a plain request; and the same with the Transfer-Encoding obfuscated (a space before
    its colon, a tab, a list, twice)."""
    smuggled = post("X-Smuggled: yes")
    body = b"0\r\n\r\n" + smuggled
    framings = [
        ("Transfer-Encoding: chunked",),
        ("Transfer-Encoding : chunked",),
        ("Transfer-Encoding:\tchunked",),
        ("Transfer-Encoding: gzip, chunked",),
        ("Transfer-Encoding: chunked", "Transfer-Encoding: identity"),
    ]
    each_on_its_own(host, port, [
        multipart_head(f"Content-Length: {len(body)}", *framing) + body + post("Connection: close")
        for framing in framings
    ])


CASES: dict[str, Callable[[str, int], None]] = {
    "deep-pipelining": deep_pipelining,
    "pipelining-with-malformed": pipelining_with_malformed,
    "early-close": early_close,
    "rst-mid-body": rst_mid_body,
    "half-close": half_close,
    "trickled-headers": trickled_headers,
    "header-flood": header_flood,
    "chunk-size-abuse": chunk_size_abuse,
    "absurd-content-length": absurd_content_length,
    "http10-keep-alive": http10_keep_alive,
    "bare-lf": bare_lf,
    "expect-100-without-body": expect_continue_without_body,
    "smuggling-cl-te": smuggling,
}


# --- the check -----------------------------------------------------------------------------------

def in_flight(text: str) -> float | None:
    """``mnist_requests_in_flight`` in Prometheus text: the sum of its samples, None when absent."""
    values = re.findall(r"^mnist_requests_in_flight(?:\{[^}]*\})? (\S+)$", text, flags=re.MULTILINE)
    return sum(map(float, values)) if values else None


@dataclass
class Settled:
    """What :func:`settle_and_check` saw: the server passed if nothing is held, it is ready, and
    every request of the 8 connections was answered 200."""

    in_flight: float | None  # the last reading of mnist_requests_in_flight (None: /metrics never said)
    waited: float  # seconds until it read 0, or until the timeout
    ready: int | str  # /health/ready's status, or the name of the error that ended the request
    statuses: Counter = field(default_factory=Counter)  # the 8 connections' answers by status or error

    @property
    def shed(self) -> int:
        return self.statuses[503]

    @property
    def passed(self) -> bool:
        return (self.in_flight == 0 and self.ready == 200
                and self.statuses[200] == sum(self.statuses.values()) == SETTLE_CONNECTIONS * SETTLE_REQUESTS)

    def answers(self) -> str:
        """The 8 connections' answers by status: '200 x80', or e.g. '200 x3, 503 x77'."""
        return ", ".join(f"{status} x{count}"
                         for status, count in sorted(self.statuses.items(), key=lambda kv: str(kv[0])))

    def __str__(self) -> str:
        return (f"in-flight {self.in_flight:g} after {self.waited:.1f} s, ready {self.ready}, "
                f"{SETTLE_CONNECTIONS} connections x {SETTLE_REQUESTS} requests: {self.answers()}"
                if self.in_flight is not None else
                f"in-flight never read, ready {self.ready}, answers {self.answers()}")


def settle_and_check(base_url: str, timeout: float) -> Settled:
    """With the server otherwise idle: wait (up to ``timeout`` seconds, polling /metrics) until
    ``mnist_requests_in_flight`` reads 0, then ask /health/ready, then post the sample upload 10
    times one after another on each of 8 keep-alive connections at once."""
    started = time.monotonic()
    held = None
    with httpx.Client(base_url=base_url, timeout=5) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                held = in_flight(client.get("/metrics").text)
            if held == 0 or time.monotonic() - started > timeout:
                break
            time.sleep(0.1)  # the workers sample the gauge every 0.1 s
        waited = time.monotonic() - started
        try:
            ready: int | str = client.get("/health/ready").status_code
        except httpx.HTTPError as error:
            ready = type(error).__name__
    return Settled(held, waited, ready, serve_eight(base_url))


def serve_eight(base_url: str) -> Counter:
    """The answers, by status (or the error's name), of SETTLE_CONNECTIONS keep-alive connections
    at once, each posting the sample upload SETTLE_REQUESTS times in turn."""
    host, port = httpx.URL(base_url).host, httpx.URL(base_url).port
    body, headers = upload(), {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    statuses, lock = Counter(), threading.Lock()
    together = threading.Barrier(SETTLE_CONNECTIONS, timeout=10)

    def client():
        keep_alive = http.client.HTTPConnection(host, port, timeout=10)
        with contextlib.suppress(threading.BrokenBarrierError):
            together.wait()
        try:
            for _ in range(SETTLE_REQUESTS):
                try:
                    keep_alive.request("POST", CLASSIFY, body, headers)
                    response = keep_alive.getresponse()
                    response.read()
                    outcome: int | str = response.status
                except (OSError, http.client.HTTPException) as error:
                    keep_alive.close()  # the next request opens a new connection
                    outcome = type(error).__name__
                with lock:
                    statuses[outcome] += 1
        finally:
            keep_alive.close()

    in_threads(SETTLE_CONNECTIONS, client, seconds=SETTLE_REQUESTS * 10 + 10)
    return statuses
