"""Starting a server and knowing when it serves, for the tests and scripts that start one
(tests/conftest.py, tools/benchmark.py, tools/image_test.py): a free local port to bind, polling
``/health/ready`` until every worker answers 200, and a gunicorn master's workers and their memory."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_ready(url: str, process: subprocess.Popen, timeout: float = 180, streak: int = 10,
                     log: Callable[[], str] = lambda: "") -> float:
    """Poll ``url``/health/ready until it answers 200 ``streak`` times in a row, each time on a new
    connection so that the answers come from different workers (each worker loads its models
    itself); return the seconds from the call to the first answer of that streak (when the server
    was ready, not when the streak confirmed it). Raise RuntimeError, with ``log()``, if ``process``
    exits or ``timeout`` seconds pass first."""
    started = time.monotonic()
    ready, ready_at = 0, None
    while ready < streak:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log()}")
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"the server was not ready within {timeout} s:\n{log()}")
        asked = time.monotonic()
        try:
            ok = httpx.get(f"{url}/health/ready", timeout=10).status_code == 200
        except httpx.TransportError:
            ok = False
        ready = ready + 1 if ok else 0
        if ready == 1:
            ready_at = asked
        time.sleep(0.05 if ready else 0.02)
    return ready_at - started


def worker_pids(master: int) -> list[int]:
    """The pids of a gunicorn master's workers (its child processes)."""
    return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def worker_rss_mb(master: int) -> list[float]:
    """The resident memory of each worker of a gunicorn master, in MB."""
    return [int(re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024
            for pid in worker_pids(master)]
