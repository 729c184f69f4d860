"""The request limits (size, body time, processing deadline) as ASGI middleware around stand-in
apps, and the access log's lines."""

import asyncio
import json

import pytest

from mnist_service.errors import BodyTimedOut, RequestTimedOut, UploadTooLarge
from mnist_service.middleware import RequestLimits, log_line


def limits(app, max_bytes=1000, body_timeout=5.0, request_timeout=5.0) -> RequestLimits:
    return RequestLimits(app, max_bytes=max_bytes, body_timeout=body_timeout, request_timeout=request_timeout)


def run(app, chunks, headers=((b"transfer-encoding", b"chunked"),), method="POST", pause=0.0):
    """Call ``app`` with a body of ``chunks``, ``pause`` seconds before each; the messages it sent."""
    sent, answered = iter(chunks), []

    async def receive():
        await asyncio.sleep(pause)
        chunk = next(sent, None)
        return {"type": "http.request", "body": chunk or b"", "more_body": chunk is not None}

    async def send(message):
        answered.append(message)

    scope = {"type": "http", "method": method, "path": "/", "headers": list(headers)}
    asyncio.run(app(scope, receive, send))
    return answered


async def read_body(scope, receive, send):
    body = []
    while True:
        message = await receive()
        body.append(message["body"])
        if not message["more_body"]:
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    scope["body"] = b"".join(body)


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit():
    read = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            read.append(len(message["body"]))
            if not message["more_body"]:
                return

    with pytest.raises(UploadTooLarge) as refused:
        run(limits(app, max_bytes=1000), [b"x" * 400] * 10)
    assert refused.value.status == 413
    assert sum(read) <= 1200, "the rest of the body was never read"


def test_a_body_within_the_limits_passes_untouched():
    scope = {}

    async def app(inner_scope, receive, send):
        await read_body(inner_scope, receive, send)
        scope.update(inner_scope)

    run(limits(app, max_bytes=1000), [b"a" * 500, b"b" * 500])
    assert scope["body"] == b"a" * 500 + b"b" * 500


def test_a_declared_length_over_the_limit_is_refused_before_reading():
    async def app(scope, receive, send):
        raise AssertionError("the app must not be called")

    with pytest.raises(UploadTooLarge, match="the request body is 11 bytes; the limit is 10"):
        run(limits(app, max_bytes=10), [b"x" * 11], headers=[(b"content-length", b"11")])


def test_a_body_that_trickles_in_is_cut_off_at_its_deadline():
    with pytest.raises(BodyTimedOut, match="did not arrive within 0.2 s") as cut:
        run(limits(read_body, body_timeout=0.2), [b"x"] * 100, pause=0.05)
    assert cut.value.status == 408


def test_a_request_not_answered_by_its_deadline_gets_504_however_long_its_body_took():
    async def slow(scope, receive, send):
        await read_body(scope, receive, lambda message: asyncio.sleep(0))
        await asyncio.sleep(10)

    with pytest.raises(RequestTimedOut, match="not answered within 0.3 s") as late:
        # the body takes 0.4 s, longer than the processing deadline: its own time does not count
        run(limits(slow, body_timeout=5, request_timeout=0.3), [b"x"] * 4, pause=0.1)
    assert late.value.status == 504


@pytest.mark.parametrize("path", ["/mnist/classify", "/v2/models/x/versions/\u2028\x85\u2029\x1c\U0003943d", "/é"])
def test_an_access_log_entry_is_one_line_whatever_the_path_holds(path):
    entry = {"request_id": "abc", "method": "GET", "path": path, "status": 404}
    line = log_line(entry)
    assert line.splitlines() == [line], "a line reader sees exactly one line"
    assert json.loads(line) == entry
