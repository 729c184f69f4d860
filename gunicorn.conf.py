"""gunicorn settings for the MNIST server, taken from the environment.

HOST (default 127.0.0.1), PORT (5000), WORKERS (2: one per core of a small box, each with its own
copy of the models), WORKER_TIMEOUT (120 s). The worker class is uvicorn's with a graceful drain
(mnist_service.worker); gunicorn's ``graceful_timeout``, the time a worker has from SIGTERM until
it is killed, is the drain plus the longest a request may take (its body's time and its
processing deadline), so every request a worker accepted can finish: 30 s by default.
TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS default to 1 per worker, so the workers do not
fight over the cores. Prometheus' multiprocess mode gets a fresh folder (PROMETHEUS_MULTIPROC_DIR,
made if it is named but missing) before the workers fork, and a dead worker's live gauges are
dropped. The workers' heartbeat files are on /dev/shm where there is one, so nothing is written to
the root filesystem or /tmp but what the app writes there. The server's own settings
are read once here, and a bad value stops gunicorn with its message before any worker starts,
instead of failing every worker. The access log is the app's own JSON lines.
"""

import math
import os
import shutil
import sys
import tempfile

from mnist_service.settings import Settings, SettingsError

try:
    settings, settings_error = Settings.from_env(), None
except SettingsError as error:
    settings, settings_error = Settings(), error  # on_starting stops gunicorn with the message

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WORKERS", "2"))
worker_class = "mnist_service.worker.ServiceWorker"
timeout = int(os.environ.get("WORKER_TIMEOUT", "120"))
graceful_timeout = math.ceil(settings.drain_seconds + settings.body_timeout_seconds + settings.request_timeout_seconds)
accesslog = None  # mnist_service.middleware.RequestObserver logs each request as one JSON line
control_socket_disable = True  # gunicorn's runtime control socket is not used here

for name, value in (("TF_NUM_INTRAOP_THREADS", "1"), ("TF_NUM_INTEROP_THREADS", "1"), ("TF_CPP_MIN_LOG_LEVEL", "2")):
    os.environ.setdefault(name, value)

if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mnist-metrics-")
else:
    # gunicorn imports the worker class (and with it mnist_service.metrics, whose unlabelled gauges
    # open their files at once) before on_starting runs: a folder that is named but missing must
    # exist by then.
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

# The heartbeat file gunicorn makes for each worker (the worker touches it, the master reads its
# time): on a tmpfs, as gunicorn's docs advise, so that a slow disk cannot stall a worker, and off
# the root filesystem, which may be read-only (deploy/kubernetes). /dev/shm is a writable tmpfs
# under Docker, podman and Kubernetes; where there is none (macOS), gunicorn's default, the
# temporary folder.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def on_starting(server):
    """Refuse bad settings before any worker forks; start from empty metrics (samples left by an
    earlier run would be summed in)."""
    if settings_error is not None:
        sys.exit(f"error: {settings_error}")
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
