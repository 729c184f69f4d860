"""Fleet-reliability figures of the real server: what its clients see when it is stopped, crowded
by a heavy neighbour, overloaded, loses a worker, or runs for a long time.

    python -m tools.faults [--only drain|neighbour|overload|kill|soak|abuse] [--soak-seconds 600] [--quick]

Each scenario starts its own ``gunicorn -c gunicorn.conf.py server:app`` as `make serve` does
($WORKERS uvicorn workers, default 2, serving var/data/ or $MODEL_DIR) on a free port, waits until
every worker is ready (tools.readiness), and drives it with wrk (tools.benchmark's multipart POST
script of one 28x28 sample PNG to /mnist/classify, with tools/count_statuses.lua appended to count
the answers by status) and with Python clients in threads (http.client: one request a connection,
or sequential requests on a keep-alive one, each answer's status and latency recorded):

    drain      10 times: 16 batch requests of 64 sample images, their bodies all sent, when the
               gunicorn master gets SIGTERM, and 5 more in the first second after it (a load
               balancer that has not noticed yet): the requests lost (no 200: refused, reset, an
               error status), when /health/ready turned 503 (polled every 20 ms), when gunicorn exited.
    neighbour  the others' p99 (wrk, 8 connections) alone, then beside a client posting batches of 64
               blank 4000x4000 PNGs back to back (past the request's pixel budget), then beside one
               posting batches of 3 sample digits drawn on 4000x4000 canvases (within it, so decoded
               and classified): the p99 beside it over alone, the others' errors, the neighbour's answers.
    overload   goodput (2xx answers a second, by wrk's status count) in one server's life: wrk at 32
               connections, then at 512, the same script; the goodput at 512 over that at 32, wrk's
               socket errors at 512 (connect, read, write, timeout), /health/ready and /health/live
               polled every 0.5 s throughout (failed, or slower than 1 s), and, beside the run at 512,
               a probe (4 keep-alive connections) timing each of its answers: the shed (503 or 429)
               must carry Retry-After and problem JSON. Printed, not targets: the served p99 at 512
               (the probe's 200s; under 512 closed-loop connections it is set by queueing, Little's
               law: the mean wait is the connections over the answers a second), the shed's p99 and
               max when there were any, the share shed and the change of /metrics'
               mnist_shed_requests_total at each count.
    kill       wrk at 16 connections for 20 s, one worker SIGKILLed after 5 s: the share of requests
               failed (non-2xx and socket errors) and whether gunicorn replaced the worker within 30 s.
    soak       wrk at 16 connections for --soak-seconds: the workers' resident memory, summed, after a
               10 s warm-up, every 30 s and at the end.
    abuse      each case of tests/abuse.py's raw-socket corpus (deep pipelining closed unread, malformed
               requests, resets, half-closes, slowloris, header floods, absurd chunk sizes and
               Content-Lengths, HTTP/1.0 keep-alive, bare LFs, 100-continue without a body, CL.TE
               smuggling) against a server with short deadlines (headers and body 1 s, processing
               3 s), then, the server idle: /metrics' mnist_requests_in_flight (waited for up to 6 s
               to read 0), /health/ready, and the requests shed (503) of 8 keep-alive connections at
               once posting 10 uploads each. A case that leaves the server broken has it replaced
               before the next.

Each scenario prints its figures next to their targets, PASS or FAIL, and a summary table ends the
run; the exit status is 1 if any target failed, else 0. The load generators run on
the server's machine and share its cores, so absolute speeds depend on it; most targets do not:
counts and shares of failed requests, the ratio to the same machine's p99 alone or to its goodput at
32 connections, the memory's change. Overload's latencies do, which is why they are printed, not
checked: under 512 closed-loop connections each waits behind the others, and wrk takes its share
of the same cores. wrk's timeout is its default, 2 s.
A full run takes about 14 minutes (the soak 10 of them), --quick about 2.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from tests import abuse as abuse_corpus
from tools.benchmark import BOUNDARY, ensure_wrk, lua_script, multipart, to_ms
from tools.readiness import free_port, wait_until_ready, worker_pids, worker_rss_mb

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("drain", "neighbour", "overload", "kill", "soak", "abuse")
SAMPLES = sorted((ROOT / "var" / "data").glob("sample-*.png"))
COUNT_STATUSES = Path(__file__).with_name("count_statuses.lua")
SINGLE, BATCH = "/mnist/classify", "/mnist/classify/batch"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
LATE_REQUESTS = (0.1, 0.3, 0.5, 0.7, 0.9)  # drain: seconds after SIGTERM
SOAK_WARM_UP, SOAK_EVERY = 10, 30
OVERLOAD_BASE, OVERLOAD_CROWD = 32, 512  # overload: wrk's connections, the goodput's base and the crowd
SHED_STATUSES = (503, 429)


@dataclass(frozen=True)
class Durations:
    """How long the scenarios run: a full run, or --quick's smoke run."""

    drain_runs: int = 10
    neighbour_seconds: int = 10
    overload_seconds: int = 20
    kill_seconds: int = 20
    kill_after: int = 5
    soak_seconds: int = 600


QUICK = Durations(drain_runs=2, neighbour_seconds=3, overload_seconds=5, kill_seconds=10, kill_after=3,
                  soak_seconds=30)


@dataclass
class Check:
    """One figure against its target: a row of the summary table."""

    scenario: str
    figure: str
    value: str
    target: str
    passed: bool

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def __str__(self) -> str:
        return f"{self.figure} {self.value} [target {self.target}: {self.verdict}]"


def report(scenario: str, checks: list[Check], *details: str) -> list[Check]:
    """Print a scenario's line: its checked figures, then the others; return the checks."""
    print(f"{scenario}: " + "; ".join([*map(str, checks), *details]), flush=True)
    return checks


# --- clients -------------------------------------------------------------------------------------

@dataclass
class Answer:
    """One request's outcome: its status, or the name of the exception that ended it (refused, reset...)."""

    status: int | str
    at: float  # when it was sent, time.monotonic()
    seconds: float
    problem: bool = False  # it carries Retry-After and problem JSON, as a shed answer must

    @property
    def answered_at(self) -> float:
        return self.at + self.seconds


def ask(connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
        sent: threading.Event | None = None) -> Answer:
    """Send one request on ``connection`` and read its whole answer; ``sent`` is set once the whole
    body is written. A connection an exception ended is closed (the next request opens a new one)."""
    at = time.monotonic()
    try:
        connection.request(method, path, body, MULTIPART if body else {})
        if sent:
            sent.set()
        response = connection.getresponse()
        response.read()
    except (OSError, http.client.HTTPException) as error:
        connection.close()
        return Answer(type(error).__name__, at, time.monotonic() - at)
    problem = bool(response.getheader("Retry-After")) and \
        (response.getheader("Content-Type") or "").startswith("application/problem+json")
    return Answer(response.status, at, time.monotonic() - at, problem)


def connect(port: int, timeout: float) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


class OneRequest(threading.Thread):
    """One POST on a new connection: ``sent`` is set once its body is written (or sending failed)."""

    def __init__(self, port: int, path: str, body: bytes):
        super().__init__(daemon=True)
        self.port, self.path, self.body = port, path, body
        self.sent = threading.Event()
        self.answer: Answer | None = None

    def run(self) -> None:
        connection = connect(self.port, timeout=90)
        try:
            self.answer = ask(connection, "POST", self.path, self.body, self.sent)
        finally:
            self.sent.set()
            connection.close()


class Poster(threading.Thread):
    """Posts ``body`` to ``path`` back to back on one keep-alive connection until stopped."""

    def __init__(self, port: int, path: str, body: bytes, timeout: float):
        super().__init__(daemon=True)
        self.port, self.path, self.body, self.timeout = port, path, body, timeout
        self.answers: list[Answer] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        connection = connect(self.port, self.timeout)
        while not self.stopping.is_set():
            self.answers.append(ask(connection, "POST", self.path, self.body))
            if isinstance(self.answers[-1].status, str):
                self.stopping.wait(0.05)  # not a busy loop of refused connections
        connection.close()

    def stop(self) -> None:
        """Stop after the request in flight (waiting for it up to the client's timeout)."""
        self.stopping.set()
        self.join(self.timeout + 5)


class HealthPoller(threading.Thread):
    """GETs each of ``routes`` every ``interval`` seconds until stopped, as a load balancer's or
    kubelet's probe does: each poll on a new connection, on time however long the others take."""

    def __init__(self, port: int, routes: tuple[str, ...], interval: float, timeout: float = 5):
        super().__init__(daemon=True)
        self.port, self.routes, self.interval, self.timeout = port, routes, interval, timeout
        self.answers: dict[str, list[Answer]] = {route: [] for route in routes}  # in the order answered
        self.stopping = threading.Event()

    def run(self) -> None:
        polls, tick = [], time.monotonic()
        while not self.stopping.wait(max(0.0, tick - time.monotonic())):
            for route in self.routes:
                polls.append(threading.Thread(target=self.poll, args=(route,), daemon=True))
                polls[-1].start()
            tick += self.interval
        for poll in polls:
            poll.join(self.timeout + 1)

    def poll(self, route: str) -> None:
        connection = connect(self.port, self.timeout)
        self.answers[route].append(ask(connection, "GET", route))
        connection.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(self.timeout + 5)


def tally(answers: list[Answer]) -> str:
    """The answers counted by status: '200 x16, ConnectionRefusedError x5'."""
    return counted(Counter(answer.status for answer in answers))


def counted(counts: Counter) -> str:
    return ", ".join(f"{status} x{count}" for status, count in sorted(counts.items(), key=lambda kv: str(kv[0]))) \
        or "0"


def p99_ms(seconds: list[float]) -> float | None:
    return float(np.percentile(seconds, 99)) * 1000 if seconds else None


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


# --- the server and wrk --------------------------------------------------------------------------

class Server:
    """gunicorn as `make serve` runs it, on a free port, its output in a log file of ``folder``:
    started at once; ``with`` waits until it is ready and stops it at the end. ``env``: settings
    of its own (abuse's short deadlines)."""

    def __init__(self, folder: Path, model_dir: Path, workers: int, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.log = folder / f"gunicorn-{self.port}.log"
        env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(self.port), "WORKERS": str(workers),
               "MODEL_DIR": str(model_dir), **(env or {})}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # each server its own (gunicorn.conf.py makes one)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "server:app"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        """The gunicorn master's."""
        return self.process.pid

    def wait_until_ready(self) -> float:
        """Seconds until every worker answered /health/ready with 200 (10 times in a row each)."""
        return wait_until_ready(self.url, self.process, timeout=180, streak=10 * self.workers,
                                log=lambda: self.log.read_text(errors="replace")[-4000:])

    def wait_for_exit(self, timeout: float) -> float | None:
        """When gunicorn exited (time.monotonic()), None if it has not within ``timeout`` seconds."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return time.monotonic()

    def metric(self, name: str) -> float | None:
        """The sum over its labels of a metric of /metrics, None if the server has no such metric."""
        connection = connect(self.port, timeout=10)
        try:
            connection.request("GET", "/metrics")
            text = connection.getresponse().read().decode()
        finally:
            connection.close()
        values = re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, flags=re.MULTILINE)
        return sum(float(value) for value in values) if values else None

    def stop(self) -> None:
        """SIGTERM to gunicorn (the master and its workers), SIGKILL after 60 s."""
        try:
            if self.process.poll() is None:
                os.killpg(self.pid, signal.SIGTERM)
                if self.wait_for_exit(60) is None:
                    os.killpg(self.pid, signal.SIGKILL)
                    self.process.wait()
            os.killpg(self.pid, signal.SIGKILL)  # a worker the master left behind
        except ProcessLookupError:
            pass

    def __enter__(self) -> Server:
        try:
            self.wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()


@dataclass
class WrkResult:
    """A wrk run's figures."""

    requests: int  # answered
    p99_ms: float | None
    non_2xx: int
    socket_errors: Counter  # connect, read, write, timeout
    statuses: Counter  # by tools/count_statuses.lua
    seconds: float = 0.0  # the run's length as wrk measured it

    @property
    def goodput(self) -> float:
        """2xx answers a second."""
        answered = sum(count for status, count in self.statuses.items() if 200 <= status < 300)
        return answered / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> int:
        return self.non_2xx + self.socket_errors.total()

    def errors(self) -> str:
        """The non-2xx answers and socket errors: '0', or e.g. '7 (5 non-2xx, read 2)'."""
        kinds = [f"{self.non_2xx} non-2xx"] if self.non_2xx else []
        return f"{self.failed} ({', '.join(kinds + self._socket_kinds())})" if self.failed else "0"

    def sockets(self) -> str:
        """The socket errors: '0', or e.g. '2 (read 1, timeout 1)'."""
        total = self.socket_errors.total()
        return f"{total} ({', '.join(self._socket_kinds())})" if total else "0"

    def _socket_kinds(self) -> list[str]:
        return [f"{kind} {count}" for kind, count in self.socket_errors.items() if count]


class Wrk:
    """One wrk run in the background (2 threads, ``connections``, ``seconds``) posting ``script``'s body."""

    def __init__(self, wrk: str, url: str, script: Path, connections: int, seconds: float):
        self.process = subprocess.Popen(
            [wrk, "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{seconds}s", "--latency",
             "-s", str(script), url],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def result(self) -> WrkResult:
        """Wait for the run to end: its figures."""
        output = self.process.communicate()[0]
        if self.process.returncode:
            raise RuntimeError(f"wrk failed:\n{output}")
        sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
        non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
        p99 = re.search(r"\s99%\s+(\S+)", output)
        statuses = re.search(r"^statuses(.*)$", output, flags=re.MULTILINE).group(1)
        return WrkResult(
            requests=int(re.search(r"(\d+) requests in", output).group(1)),
            p99_ms=to_ms(p99.group(1)) if p99 else None,
            non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
            socket_errors=Counter(dict(zip(("connect", "read", "write", "timeout"),
                                           map(int, sockets.groups() if sockets else (0,) * 4)))),
            statuses=Counter({int(status): int(count) for status, count in re.findall(r"(\d+)=(\d+)", statuses)}),
            seconds=to_ms(re.search(r"\d+ requests in ([^,\s]+),", output).group(1)) / 1000,
        )


@dataclass
class Bench:
    """What every scenario uses: wrk, the servers' settings, the uploads."""

    wrk: str
    folder: Path
    model_dir: Path
    workers: int
    single_body: bytes = field(init=False)
    single_script: Path = field(init=False)

    def __post_init__(self) -> None:
        self.single_body = multipart("file", [SAMPLES[7].read_bytes()])
        self.single_script = lua_script(self.single_body, self.folder, "single")
        self.single_script.write_text(self.single_script.read_text() + COUNT_STATUSES.read_text())

    def server(self, env: dict[str, str] | None = None) -> Server:
        """A new server (use it in a ``with``), with ``env``'s settings added to the environment."""
        return Server(self.folder, self.model_dir, self.workers, env)

    def run_wrk(self, server: Server, connections: int, seconds: float) -> Wrk:
        """wrk posting single 28x28 PNG uploads to /mnist/classify."""
        return Wrk(self.wrk, f"{server.url}{SINGLE}", self.single_script, connections, seconds)

    def warm_up(self, server: Server) -> None:
        self.run_wrk(server, 8, 2).result()


# --- the uploads ---------------------------------------------------------------------------------

def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def sample_batch(count: int) -> bytes:
    """A batch upload of ``count`` sample images, the digits in turn."""
    return multipart("files", [SAMPLES[n % len(SAMPLES)].read_bytes() for n in range(count)])


def large_digit(sample: Path, side: int = 4000) -> bytes:
    """A sample digit drawn large: scaled up to 70% of a ``side`` x ``side`` canvas of its background."""
    digit = Image.open(sample).convert("L")
    drawn = digit.resize((side * 7 // 10,) * 2, Image.Resampling.BILINEAR)
    canvas = Image.new("L", (side, side), digit.getpixel((0, 0)))
    canvas.paste(drawn, ((side - drawn.width) // 2,) * 2)
    return png(canvas)


# --- the scenarios -------------------------------------------------------------------------------

@dataclass
class DrainRun:
    """One drain run's outcome, its times in seconds after SIGTERM."""

    in_flight: list[Answer]  # sent before SIGTERM
    late: list[Answer]  # sent after it
    early: int  # of those in flight, answered before SIGTERM all the same
    ready_503: float | None  # /health/ready's first 503
    ready_down: tuple[str | int, float] | None  # its first other failure (refused...) and when
    exited: float | None  # gunicorn, None if not within 90 s

    @property
    def lost(self) -> int:
        return sum(answer.status != 200 for answer in self.in_flight + self.late)

    def __str__(self) -> str:
        ready = "never 503" if self.ready_503 is None else f"503 from {self.ready_503:.2f} s"
        if self.ready_down:
            ready += f", {self.ready_down[0]} from {self.ready_down[1]:.2f} s"
        exited = "more than 90 s" if self.exited is None else f"{self.exited:.1f} s"
        return (f"lost {self.lost} of {len(self.in_flight) + len(self.late)}; in flight: {tally(self.in_flight)} "
                f"({self.early} answered before SIGTERM); late: {tally(self.late)}; /health/ready {ready}; "
                f"gunicorn exited after {exited}")


def drain_once(bench: Bench, body: bytes) -> DrainRun:
    """Start a server, SIGTERM its master with 16 requests in flight, send 5 more in the next second."""
    with bench.server() as server:
        in_flight = [OneRequest(server.port, BATCH, body) for _ in range(16)]
        for request in in_flight:
            request.start()
        for request in in_flight:
            request.sent.wait(30)
        ready = HealthPoller(server.port, ("/health/ready",), interval=0.02, timeout=1)
        signalled = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        ready.start()
        late = []
        for delay in LATE_REQUESTS:
            time.sleep(max(0.0, signalled + delay - time.monotonic()))
            late.append(OneRequest(server.port, BATCH, body))
            late[-1].start()
        exited = server.wait_for_exit(90)
        ready.stop()
        for request in in_flight + late:
            request.join(95)
    polls = [(answer.status, answer.answered_at - signalled)
             for answer in ready.answers["/health/ready"] if answer.at >= signalled]
    return DrainRun(
        in_flight=[request.answer for request in in_flight],
        late=[request.answer for request in late],
        early=sum(request.answer.answered_at < signalled for request in in_flight),
        ready_503=next((after for status, after in polls if status == 503), None),
        ready_down=next(((status, after) for status, after in polls if status not in (200, 503)), None),
        exited=None if exited is None else exited - signalled,
    )


def drain(bench: Bench, durations: Durations) -> list[Check]:
    """SIGTERM to the master with requests in flight and more arriving: the requests lost."""
    body = sample_batch(64)
    runs = []
    for number in range(1, durations.drain_runs + 1):
        runs.append(drain_once(bench, body))
        print(f"  run {number:>2}: {runs[-1]}", flush=True)
    lost, total = sum(run.lost for run in runs), sum(len(run.in_flight) + len(run.late) for run in runs)
    turned = [run.ready_503 for run in runs if run.ready_503 is not None]
    exits = [run.exited for run in runs]
    return report("drain", [Check("drain", f"requests lost in {len(runs)} runs", f"{lost} of {total}", "0", lost == 0)],
                  f"/health/ready 503 after SIGTERM in {len(turned)} of {len(runs)} runs"
                  + (f", {max(turned):.2f} s at most" if turned else ""),
                  "gunicorn exited " + ("late: a run did not end in 90 s" if None in exits
                                        else f"{min(exits):.1f} to {max(exits):.1f} s after SIGTERM"))


def neighbour(bench: Bench, durations: Durations) -> list[Check]:
    """The others' p99 beside a client with a pathological batch, then beside a heavy one within budget."""
    blank, digits = png(Image.new("L", (4000, 4000), 255)), [large_digit(SAMPLES[n]) for n in (2, 5, 8)]
    neighbours = {
        "neighbour/pathological": ("64 blank 4000x4000 PNGs", multipart("files", [blank] * 64)),
        "neighbour/heavy": ("3 digits drawn on 4000x4000", multipart("files", digits)),
    }
    seconds = durations.neighbour_seconds
    checks = []
    with bench.server() as server:
        bench.warm_up(server)
        alone = bench.run_wrk(server, 8, seconds).result()
        print(f"  others alone (wrk, 8 connections, {seconds} s): p99 {ms(alone.p99_ms)}, "
              f"{alone.requests} requests, errors {alone.errors()}", flush=True)
        for scenario, (what, body) in neighbours.items():
            client = Poster(server.port, BATCH, body, timeout=120)
            client.start()
            time.sleep(1)  # its first batch is being read and decoded
            beside = bench.run_wrk(server, 8, seconds).result()
            client.stop()
            ratio = beside.p99_ms / alone.p99_ms if beside.p99_ms and alone.p99_ms else None
            checks += report(scenario, [
                Check(scenario, "others' p99 beside it / alone",
                      f"{ms(beside.p99_ms)} / {ms(alone.p99_ms)} = {'n/a' if ratio is None else f'{ratio:.1f}x'}",
                      "<= 3x", ratio is not None and ratio <= 3),
                Check(scenario, "others' errors", beside.errors(), "0", beside.failed == 0),
            ], f"the neighbour ({what}, {len(body) / 1e6:.2f} MB a request) got {tally(client.answers)}")
            server.wait_until_ready()  # every worker up again before the next
    return checks


def overload(bench: Bench, durations: Durations) -> list[Check]:
    """Goodput at 32 connections, then at 512, the health routes polled throughout, a probe beside
    the run at 512 checking what the shed get."""
    seconds = durations.overload_seconds
    with bench.server() as server:
        bench.warm_up(server)
        health = HealthPoller(server.port, ("/health/ready", "/health/live"), interval=0.5)
        health.start()
        shed_counts = [server.metric("mnist_shed_requests_total")]
        base = bench.run_wrk(server, OVERLOAD_BASE, seconds).result()
        shed_counts.append(server.metric("mnist_shed_requests_total"))
        probes = [Poster(server.port, SINGLE, bench.single_body, timeout=30) for _ in range(4)]
        run = bench.run_wrk(server, OVERLOAD_CROWD, seconds)
        for probe in probes:
            probe.start()
        crowd = run.result()
        ended = time.monotonic()
        for probe in probes:
            probe.stop()
        health.stop()
        shed_counts.append(server.metric("mnist_shed_requests_total"))
    answers = [answer for probe in probes for answer in probe.answers if answer.at < ended]
    served_p99 = p99_ms([answer.seconds for answer in answers if answer.status == 200])
    shed = [answer for answer in answers if answer.status in SHED_STATUSES]
    well_formed = sum(answer.problem for answer in shed)
    ratio = crowd.goodput / base.goodput if base.goodput else 0.0
    # Little's law: closed-loop connections each waiting for its answer, the mean wait is their
    # number over the answers a second, whatever the server does.
    answer_rate = crowd.requests / crowd.seconds if crowd.seconds else 0.0
    queueing = f"{OVERLOAD_CROWD / answer_rate * 1000:.0f} ms" if answer_rate else "n/a"
    metric = "absent" if None in shed_counts else (f"+{shed_counts[1] - shed_counts[0]:.0f} at {OVERLOAD_BASE}, "
                                                   f"+{shed_counts[2] - shed_counts[1]:.0f} at {OVERLOAD_CROWD}")
    checks = [
        Check("overload", f"goodput at {OVERLOAD_CROWD} / at {OVERLOAD_BASE} connections (2xx/s, wrk)",
              f"{crowd.goodput:.0f} / {base.goodput:.0f} = {ratio:.0%}", ">= 80%", ratio >= 0.8),
        Check("overload", f"socket errors at {OVERLOAD_CROWD} (wrk)", crowd.sockets(), "0",
              crowd.socket_errors.total() == 0),
    ]
    for route, polls in health.answers.items():
        failed = [answer for answer in polls if answer.status != 200]
        slow = [answer for answer in polls if answer.status == 200 and answer.seconds > 1]
        checks.append(Check("overload", f"{route} polls failed or slower than 1 s",
                            f"{len(failed) + len(slow)} of {len(polls)}"
                            + (f" (failed {tally(failed)}; slow {len(slow)})" if failed or slow else ""),
                            "0", not failed and not slow and bool(polls)))
    checks.append(Check("overload", "shed answers with Retry-After and problem JSON (probe)",
                        f"{well_formed} of {len(shed)}" if shed else "none shed", "all", well_formed == len(shed)))
    shed_text = "no shed answers (probe)" if not shed else (
        f"shed answered in p99 {ms(p99_ms([answer.seconds for answer in shed]))}, "
        f"max {ms(max(answer.seconds for answer in shed) * 1000)} (probe)")
    return report("overload", checks,
                  f"served p99 at {OVERLOAD_CROWD} {ms(served_p99)} (probe, 200s; information: set by queueing, "
                  f"Little's law {OVERLOAD_CROWD} connections / {answer_rate:.0f} answers/s = {queueing} mean)",
                  shed_text,
                  f"wrk at {OVERLOAD_BASE}: {base.requests} answers: {counted(base.statuses)}, "
                  f"errors {base.errors()}, p99 {ms(base.p99_ms)}",
                  f"wrk at {OVERLOAD_CROWD}: {crowd.requests} answers: {counted(crowd.statuses)}, "
                  f"shed {sum(crowd.statuses[status] for status in SHED_STATUSES) / max(crowd.requests, 1):.1%}",
                  f"mnist_shed_requests_total {metric}",
                  f"probe {len(answers)} requests: {tally(answers)}")


def kill(bench: Bench, durations: Durations) -> list[Check]:
    """SIGKILL one worker under load: the requests failed, the worker replaced."""
    with bench.server() as server:
        bench.warm_up(server)
        run = bench.run_wrk(server, 16, durations.kill_seconds)
        time.sleep(durations.kill_after)
        victim = worker_pids(server.pid)[0]
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        replaced = None
        while replaced is None and time.monotonic() - killed < 30:
            pids = worker_pids(server.pid)
            if victim not in pids and len(pids) == server.workers:
                replaced = time.monotonic() - killed
            time.sleep(0.1)
        result = run.result()
    attempted = result.requests + result.socket_errors.total()
    share = result.failed / max(attempted, 1) * 100
    return report("kill", [
        Check("kill", "failed", f"{result.failed} of {attempted} = {share:.3f}%", "<= 0.1%", share <= 0.1),
        Check("kill", "worker replaced", "no" if replaced is None else f"yes, after {replaced:.1f} s", "within 30 s",
              replaced is not None),
    ], f"errors {result.errors()}, answers {counted(result.statuses)}")


def soak(bench: Bench, seconds: int) -> list[Check]:
    """wrk for ``seconds`` after a warm-up: the workers' memory at the start, every 30 s, at the end."""
    at = [*range(SOAK_WARM_UP, SOAK_WARM_UP + seconds, SOAK_EVERY), SOAK_WARM_UP + seconds]
    with bench.server() as server:
        started = time.monotonic()
        run = bench.run_wrk(server, 16, SOAK_WARM_UP + seconds + 1)
        samples, workers = [], set()
        for offset in at:
            time.sleep(max(0.0, started + offset - time.monotonic()))
            samples.append(sum(worker_rss_mb(server.pid)))
            workers.update(worker_pids(server.pid))
            print(f"  {offset:>4} s: workers' RSS {samples[-1]:.0f} MB", flush=True)
        result = run.result()
    change = (samples[-1] - samples[0]) / samples[0] * 100
    return report("soak", [
        Check("soak", "workers' RSS change", f"{samples[0]:.0f} -> {samples[-1]:.0f} MB = {change:+.1f}%",
              "within +-5%", abs(change) <= 5),
    ], f"max {max(samples):.0f} MB over {len(samples)} samples",
       f"{result.requests} requests in {seconds} s + {SOAK_WARM_UP} s warm-up, errors {result.errors()}",
       f"workers replaced during it: {'yes' if len(workers) > bench.workers else 'no'}")


ABUSE_DEADLINES = {"HEADERS_TIMEOUT_SECONDS": "1", "BODY_TIMEOUT_SECONDS": "1", "REQUEST_TIMEOUT_SECONDS": "3"}
ABUSE_SETTLE_SECONDS = 6  # what a case left passes its deadlines (body 1 s + processing 3 s), the gauge is sampled


def abuse(bench: Bench) -> list[Check]:
    """Each raw-socket abuse case, then the server idle: nothing held, ready, 8 connections served
    without shedding; a server a case broke is replaced, so that each case is judged on its own."""
    checks, cases = [], list(abuse_corpus.CASES.items())
    while cases:
        with bench.server(ABUSE_DEADLINES) as server:
            while cases:
                case, run_case = cases.pop(0)
                started = time.monotonic()
                run_case("127.0.0.1", server.port)
                abused = time.monotonic() - started
                settled = abuse_corpus.settle_and_check(server.url, ABUSE_SETTLE_SECONDS)
                in_flight = "never read" if settled.in_flight is None else f"{settled.in_flight:g}"
                value = f"{in_flight}, {settled.ready}, {settled.shed}"
                if set(settled.statuses) - {200, 503}:
                    value += f" ({settled.answers()})"  # answers neither served nor shed: say which
                checks.append(Check("abuse", f"after {case}: in-flight, ready, shed at 8 connections", value,
                                    "0, 200, 0", settled.passed))
                print(f"  {case}: abused for {abused:.1f} s; then {settled}", flush=True)
                if not settled.passed:
                    break  # the next case gets a new server
    failed = [check.figure.split(":")[0].removeprefix("after ") for check in checks if not check.passed]
    return report("abuse", checks, f"cases that left the server broken: {', '.join(failed) or 'none'}")


def summary(checks: list[Check]) -> None:
    rows = [("scenario", "figure", "value", "target", "result"),
            *((check.scenario, check.figure, check.value, check.target, check.verdict) for check in checks)]
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    print("\nsummary")
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    print(f"{sum(check.passed for check in checks)} of {len(checks)} targets met")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=SCENARIOS, help="run this scenario only")
    parser.add_argument("--soak-seconds", type=int, help="the soak's length (default 600; 30 with --quick)")
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke run of the script, not figures")
    args = parser.parse_args()

    from mnist_service.artifacts import DEFAULT_MODEL_DIR

    durations = QUICK if args.quick else Durations()
    soak_seconds = args.soak_seconds or durations.soak_seconds
    model_dir = Path(os.environ.get("MODEL_DIR") or DEFAULT_MODEL_DIR)
    if not any(model_dir.glob("*.keras")):
        sys.exit(f"no model in {model_dir}: train them first (make model)")
    if len(SAMPLES) != 10:
        sys.exit("var/data/ must hold sample-0.png ... sample-9.png (make samples)")
    folder = Path(tempfile.mkdtemp(prefix="mnist-faults-"))
    bench = Bench(ensure_wrk(), folder, model_dir, int(os.environ.get("WORKERS", "2")))
    print(f"server: gunicorn, {bench.workers} uvicorn workers (gunicorn.conf.py), the models of {model_dir}; "
          f"load: wrk and Python clients on the same machine, {os.cpu_count()} CPUs; "
          f"{'--quick: short runs' if args.quick else 'full runs'}; server logs in {folder}", flush=True)
    scenarios = {
        "drain": lambda: drain(bench, durations),
        "neighbour": lambda: neighbour(bench, durations),
        "overload": lambda: overload(bench, durations),
        "kill": lambda: kill(bench, durations),
        "soak": lambda: soak(bench, soak_seconds),
        "abuse": lambda: abuse(bench),
    }
    started = time.monotonic()
    checks = []
    for name in [args.only] if args.only else SCENARIOS:
        print(f"\n{name}", flush=True)
        try:
            checks += scenarios[name]()
        except RuntimeError as error:
            sys.exit(f"{name}: {error}")
    summary(checks)
    print(f"ran {time.monotonic() - started:.0f} s")
    return 0 if all(check.passed for check in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
