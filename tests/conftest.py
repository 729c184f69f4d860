"""Shared fixtures: MNIST data, a small model trained once per session, a real gunicorn server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import mnist_data

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "var" / "data").glob("sample-*.png"))


@pytest.fixture(scope="session")
def samples() -> dict[int, Path]:
    """The sample images shipped in var/data/, by digit."""
    found = {int(path.stem.split("-")[1]): path for path in SAMPLES}
    assert sorted(found) == list(range(10)), "var/data/ must hold sample-0.png ... sample-9.png"
    return found


@pytest.fixture(scope="session")
def mnist() -> mnist_data.Mnist:
    """MNIST as training finds it ($MNIST_DATA, var/data/mnist/, else the download)."""
    return mnist_data.load_mnist()


@pytest.fixture(scope="session")
def small_model(tmp_path_factory) -> Path:
    """A model trained once per session by the real CLI on a slice of the data (fast, ~97%)."""
    out = tmp_path_factory.mktemp("model") / "mnist-cnn.keras"
    subprocess.run(
        [sys.executable, "train_mnist.py", "--epochs", "2", "--limit", "12000", "--out", str(out)],
        cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
    )
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def server(small_model, tmp_path_factory) -> str:
    """Base URL of a real gunicorn server (2 uvicorn workers) serving the small model."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "gunicorn.log"
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "WORKERS": "2",
           "MODEL_PATH": str(small_model)}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "server:app"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, process, log_path)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_until_serving(base: str, process: subprocess.Popen, log_path: Path, timeout: float = 120) -> None:
    """Wait until a worker has loaded the model and answers a classification."""
    deadline = time.monotonic() + timeout
    sample = SAMPLES[0].read_bytes()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.post(f"{base}/mnist/classify", files={"file": sample}, timeout=30).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server did not become ready in {timeout} s:\n{log_path.read_text()}")
