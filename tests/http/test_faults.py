"""Faults a fleet meets, against the real gunicorn: a graceful stop with requests in flight, a
worker killed under load, overload, slow clients, heavy uploads and a request's deadline."""

import io
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import gunicorn, wait_until_ready
from tests.helpers import assert_problem, classify, classify_batch, get, metric
from tools.readiness import worker_pids


def batch_parts(samples, count: int = 64) -> list[tuple[str, bytes]]:
    return [(f"{n}.png", samples[n % 10].read_bytes()) for n in range(count)]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def large_digit(sample, side: int) -> bytes:
    """A sample digit drawn large: dark ink on a white ``side`` x ``side`` page."""
    digit = Image.open(sample).convert("L").resize((side // 2, side // 2), Image.Resampling.BILINEAR)
    page = Image.new("L", (side, side), 255)
    page.paste(Image.eval(digit, lambda value: 255 - value), (side // 4, side // 4))
    return png(page)


@pytest.mark.parametrize("run", range(3))
def test_a_graceful_stop_answers_every_request_sent_before_and_during_the_drain(small_models, tmp_path, samples,
                                                                               run):
    """SIGTERM while 16 batch requests are in flight: readiness turns 503 at once, every request
    sent before the signal and during the drain is answered 200 (keep-alive connections are told to
    close), and gunicorn exits once the drain is over and the requests are done."""
    parts = batch_parts(samples)
    with gunicorn(small_models, tmp_path, DRAIN_SECONDS="1.5") as running:
        wait_until_ready(running)
        with ThreadPoolExecutor(16) as pool:
            in_flight = [pool.submit(classify_batch, running, parts) for _ in range(16)]
            time.sleep(0.05)
            signalled = time.monotonic()
            running.process.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            ready = get(running, "/health/ready")
            during = classify(running, samples[4].read_bytes())
            answers = [future.result() for future in in_flight]
        assert_problem(ready, 503, "shutting down")
        assert during.status_code == 200 and during.json()["digit"] == 4
        assert during.headers["connection"] == "close"
        assert [answer.status_code for answer in answers] == [200] * 16
        assert all(len(answer.json()["results"]) == 64 for answer in answers)
        running.process.wait(timeout=30)
        assert time.monotonic() - signalled >= 1.5, "the workers stopped before the drain was over"
        assert running.process.returncode == 0


def test_a_killed_worker_is_replaced_and_only_its_requests_in_flight_fail(server, samples):
    """SIGKILL of a worker under load from 8 clients: the master starts a new one, and at most the
    killed worker's requests in flight (one per client at most) get no answer."""
    before = worker_pids(server.process.pid)
    upload = samples[6].read_bytes()
    stop, outcomes = threading.Event(), []

    def client():
        with httpx.Client(timeout=30) as session:
            while not stop.is_set():
                try:
                    answer = session.post(f"{server.url}/mnist/classify", files={"file": ("6.png", upload)})
                    outcomes.append(answer.status_code)
                except httpx.TransportError:
                    outcomes.append("no answer")

    clients = [threading.Thread(target=client) for _ in range(8)]
    for thread in clients:
        thread.start()
    time.sleep(1)
    killed = before[0]
    os.kill(killed, signal.SIGKILL)
    time.sleep(2)
    stop.set()
    for thread in clients:
        thread.join()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(set(worker_pids(server.process.pid)) - {killed}) < 2:
        time.sleep(0.1)
    after = worker_pids(server.process.pid)
    assert killed not in after and len(after) == 2, "the killed worker was not replaced"
    wait_until_ready(server)
    failed = [outcome for outcome in outcomes if outcome != 200]
    assert len(outcomes) > 200 and set(failed) <= {"no answer"} and len(failed) <= 8, (len(outcomes), failed)
    assert classify(server, upload).json()["digit"] == 6


def test_overload_is_shed_at_once_with_503_and_the_probes_answer_throughout(small_models, tmp_path, samples):
    """More batch requests at once than a worker may run and hold in line (MAX_IN_FLIGHT=2,
    MAX_QUEUED=2): the excess gets 503 with Retry-After and a problem saying why, each counted in
    /metrics; nothing else goes wrong, and /health/live and /health/ready answer 200 all along."""
    parts = batch_parts(samples, 32)
    with gunicorn(small_models, tmp_path, MAX_IN_FLIGHT="2", MAX_QUEUED="2") as running:
        wait_until_ready(running)
        probes, done = [], threading.Event()

        def probe():
            while not done.is_set():
                for path in ("/health/live", "/health/ready"):
                    started = time.monotonic()
                    probes.append((get(running, path).status_code, time.monotonic() - started))
                time.sleep(0.05)

        prober = threading.Thread(target=probe)
        prober.start()
        with ThreadPoolExecutor(24) as pool:
            answers = list(pool.map(lambda _: classify_batch(running, parts), range(96)))
        done.set()
        prober.join()
        shed = [answer for answer in answers if answer.status_code == 503]
        assert {answer.status_code for answer in answers} == {200, 503} and len(shed) >= 10
        for answer in shed:
            assert_problem(answer, 503, "MAX_IN_FLIGHT")
            assert answer.headers["retry-after"] == "1"
        counted = get(running, "/metrics").text
        assert metric(counted, "mnist_shed_requests_total", reason="in_flight") == len(shed)
        assert probes and all(status == 200 for status, _ in probes)
        assert max(seconds for _, seconds in probes) < 2


def raw_exchange(server, chunks: list[bytes], pause: float, read_timeout: float = 10) -> bytes:
    """Send ``chunks`` on a raw connection, ``pause`` seconds apart, and read what comes back until
    the server closes the connection."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=read_timeout) as connection:
        try:
            for chunk in chunks:
                connection.sendall(chunk)
                time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server cut us off: what it answered is below
        answer = b""
        while data := connection.recv(65536):
            answer += data
        return answer


def test_slow_clients_are_cut_off_with_408(small_models, tmp_path, samples):
    """Headers trickled, or no request at all, are cut off after HEADERS_TIMEOUT_SECONDS; a body
    trickled after BODY_TIMEOUT_SECONDS; each with a 408 problem, and the server goes on serving."""
    with gunicorn(small_models, tmp_path, HEADERS_TIMEOUT_SECONDS="1", BODY_TIMEOUT_SECONDS="1") as running:
        wait_until_ready(running)
        started = time.monotonic()
        headers = b"POST /mnist/classify HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40
        answer = raw_exchange(running, [headers[n : n + 1] for n in range(len(headers))], pause=0.1)
        assert answer.startswith(b"HTTP/1.1 408") and b"HEADERS_TIMEOUT_SECONDS" in answer
        assert 0.9 < time.monotonic() - started < 3
        assert raw_exchange(running, [], pause=0).startswith(b"HTTP/1.1 408"), "an idle connection is closed too"

        body = b"x" * 4000
        head = (b"POST /mnist/classify HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body))
        answer = raw_exchange(running, [head] + [body[n : n + 100] for n in range(0, len(body), 100)], pause=0.1)
        assert answer.startswith(b"HTTP/1.1 408") and b"BODY_TIMEOUT_SECONDS" in answer
        assert b"application/problem+json" in answer
        assert classify(running, samples[8].read_bytes()).json()["digit"] == 8


def test_headers_over_the_limit_get_431_and_the_server_goes_on(server, samples):
    """A request whose headers pass 32 KiB is answered 431 with a problem before it reaches the app,
    and its connection is closed; the next request is served."""
    head = b"POST /mnist/classify HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-Filler-%d: %s\r\n" % (n, b"a" * 1000) for n in range(40)) + b"\r\n"
    answer = raw_exchange(server, [head], pause=0)
    assert answer.startswith(b"HTTP/1.1 431") and b"application/problem+json" in answer
    assert b"over 32768 bytes" in answer and answer.count(b"HTTP/1.1") == 1, answer
    assert classify(server, samples[4].read_bytes()).json()["digit"] == 4


def test_a_request_past_its_deadline_gets_504_and_the_server_goes_on(small_models, tmp_path, samples):
    """REQUEST_TIMEOUT_SECONDS: a batch of 40 one-megapixel photos takes longer than 0.1 s to
    normalise, so it is answered 504 at its deadline; once the work it started is done, the worker
    serves again."""
    photos = [(f"{n}.png", large_digit(samples[n % 10], 1000)) for n in range(40)]
    with gunicorn(small_models, tmp_path, workers=1, REQUEST_TIMEOUT_SECONDS="0.1") as running:
        wait_until_ready(running)
        started = time.monotonic()
        assert_problem(classify_batch(running, photos), 504, "REQUEST_TIMEOUT_SECONDS")
        assert time.monotonic() - started < 1
        deadline = time.monotonic() + 15
        while (answer := classify(running, samples[1].read_bytes())).status_code != 200:
            assert answer.status_code == 504 and time.monotonic() < deadline, answer.text
            time.sleep(0.2)
        assert answer.json()["digit"] == 1


def test_a_request_over_its_pixel_budget_is_refused_before_decoding(server):
    """Four blank 4000x4000 PNGs declare 64 megapixels, over MAX_REQUEST_PIXELS (50 million)."""
    blank = png(Image.new("L", (4000, 4000), 255))
    started = time.monotonic()
    refused = classify_batch(server, [(f"{n}.png", blank) for n in range(4)])
    assert_problem(refused, 413, "64000000 pixels together, over the budget of 50000000")
    assert time.monotonic() - started < 1


def test_large_images_go_through_the_heavy_lane_with_the_same_answers(server, samples):
    """A batch mixing 2000x2000 photos (over the working size: the heavy lane) and small uploads
    answers each as it is answered alone."""
    parts = [(f"{n}.png", large_digit(samples[n], 2000) if n % 2 else samples[n].read_bytes()) for n in range(10)]
    together = classify_batch(server, parts).json()["results"]
    assert [result["digit"] for result in together] == list(range(10))
    for (_, content), result in zip(parts, together):
        alone = classify(server, content).json()
        np.testing.assert_allclose(alone["probabilities"], result["probabilities"], atol=1e-6)
