"""Shared fixtures: MNIST data, a small model trained once per session, a real gunicorn server."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from mnist_service import mnist_data
from tools import readiness
from tools.readiness import free_port

ROOT = Path(__file__).resolve().parent.parent
# On PYTHONPATH, a Python without TensorFlow and Keras: the servers run in it, as in the CPU image.
WITHOUT_TENSORFLOW = Path(__file__).resolve().parent / "without_tensorflow"
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
def small_models(tmp_path_factory) -> Path:
    """A model folder with both models, each trained once per session by the real CLI on a slice
    of the data (fast: the CNN ~97%, the dense network ~93%)."""
    folder = tmp_path_factory.mktemp("models")
    for kind in ("cnn", "dense"):
        subprocess.run(
            [sys.executable, "train_mnist.py", "--model", kind, "--epochs", "2", "--limit", "12000",
             "--out", str(folder / f"mnist-{kind}.keras")],
            cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
        )
    return folder


@pytest.fixture(scope="session")
def small_model(small_models) -> Path:
    """The small CNN's model file (the default model)."""
    return small_models / "mnist-cnn.keras"


@dataclass
class Server:
    """A running gunicorn: its base URL, process and log file."""

    url: str
    process: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def gunicorn(model_dir: Path, log_dir: Path, workers: int = 2, tensorflow: bool = False, **env):
    """Start gunicorn exactly as `make serve` does (gunicorn.conf.py, server:app) on a free port,
    serving the models in ``model_dir``; in a Python where TensorFlow and Keras cannot be imported
    unless ``tensorflow`` (the tensorflow engine needs them)."""
    port = free_port()
    log_path = log_dir / f"gunicorn-{port}.log"
    environment = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "WORKERS": str(workers),
                   "MODEL_DIR": str(model_dir), **env}
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if not tensorflow:
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(WITHOUT_TENSORFLOW),
                                                                  environment.get("PYTHONPATH")]))
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "server:app"],
            cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        yield Server(f"http://127.0.0.1:{port}", process, log_path)
    finally:
        process.send_signal(signal.SIGINT)  # gunicorn's quick stop: no drain (SIGTERM's) to wait for
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_until_ready(server: Server, timeout: float = 120) -> None:
    """Wait until every worker has its models warm (each answers /health/ready with 200)."""
    readiness.wait_until_ready(server.url, server.process, timeout, log=server.log_text)


@pytest.fixture(scope="session")
def server(small_models, tmp_path_factory) -> Server:
    """A real gunicorn server (2 uvicorn workers) serving the small models, ready."""
    with gunicorn(small_models, tmp_path_factory.mktemp("server")) as running:
        wait_until_ready(running)
        yield running
