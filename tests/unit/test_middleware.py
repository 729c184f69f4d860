"""The upload limit on a chunked body (no Content-Length): refused while it streams in."""

import asyncio

import pytest

from mnist_service.errors import UploadTooLarge
from mnist_service.middleware import BodySizeLimit


def run(app, chunks, headers=()):
    sent = iter(chunks)

    async def receive():
        chunk = next(sent, None)
        return {"type": "http.request", "body": chunk or b"", "more_body": chunk is not None}

    async def send(message):
        pass

    scope = {"type": "http", "method": "POST", "path": "/", "headers": list(headers)}
    return asyncio.run(app(scope, receive, send))


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit():
    read = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            read.append(len(message["body"]))
            if not message["more_body"]:
                return

    with pytest.raises(UploadTooLarge) as refused:
        run(BodySizeLimit(app, max_bytes=1000), [b"x" * 400] * 10)
    assert refused.value.status == 413
    assert sum(read) <= 1200, "the rest of the body was never read"


def test_a_body_within_the_limit_passes_untouched():
    body = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            body.append(message["body"])
            if not message["more_body"]:
                return

    run(BodySizeLimit(app, max_bytes=1000), [b"a" * 500, b"b" * 500])
    assert b"".join(body) == b"a" * 500 + b"b" * 500


def test_a_declared_length_over_the_limit_is_refused_before_reading():
    async def app(scope, receive, send):
        raise AssertionError("the app must not be called")

    with pytest.raises(UploadTooLarge, match="the request body is 11 bytes; the limit is 10"):
        run(BodySizeLimit(app, max_bytes=10), [b"x" * 11], headers=[(b"content-length", b"11")])
