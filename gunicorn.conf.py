"""gunicorn settings for the MNIST server, taken from the environment.

HOST (default 127.0.0.1), PORT (5000), WORKERS (2: one per core of a small box, each with its own
copy of the model), WORKER_TIMEOUT (120 s: a worker loads TensorFlow and the model before it
reports ready). TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS (read by TensorFlow itself)
default to 1 per worker, so the workers do not fight over the cores.
"""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WORKERS", "2"))
worker_class = "uvicorn_worker.UvicornWorker"
timeout = int(os.environ.get("WORKER_TIMEOUT", "120"))
graceful_timeout = 30
accesslog = "-"

for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ.setdefault(name, "1")
