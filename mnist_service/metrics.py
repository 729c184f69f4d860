"""Prometheus metrics of the service, correct across gunicorn workers.

Under gunicorn, gunicorn.conf.py sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers fork, so
prometheus-client has every worker write its samples there, and ``GET /metrics`` (any worker)
aggregates them with its multiprocess collector (the settings' ``metrics_dir``). Run without it
(``python server.py``), the process's own registry is exposed.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # of the exposition, for the /metrics handler

REQUESTS = Counter(
    "mnist_http_requests_total", "HTTP requests answered, by route (operationId), method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "mnist_http_request_duration_seconds", "Time to answer an HTTP request, by route.", ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ERRORS = Counter(
    "mnist_http_errors_total", "Requests answered with an error, by kind (the status' reason).", ["kind"],
)
BATCH_SIZE = Histogram(
    "mnist_inference_batch_size", "Images per model call, by model.", ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
PREDICTED = Counter("mnist_predictions_total", "Images classified, by model and predicted digit.",
                    ["model", "digit"])
SHED = Counter(
    "mnist_shed_requests_total", "Inference requests shed (503), by reason: in_flight (at the worker's door: "
    "MAX_IN_FLIGHT, MAX_QUEUED, MAX_QUEUE_WAIT_MS) or queue (a model's queue: MAX_QUEUE_WAIT_MS).", ["reason"],
)
IN_FLIGHT = Gauge(
    "mnist_requests_in_flight", "Inference requests the workers run (admitted, not yet answered), sampled every "
    "0.1 s.", multiprocess_mode="livesum",
)
QUEUED = Gauge(
    "mnist_requests_queued", "Inference requests waiting in line for a slot (past MAX_IN_FLIGHT), sampled every "
    "0.1 s.", multiprocess_mode="livesum",
)
MODEL_LOAD_SECONDS = Gauge(
    "mnist_model_load_seconds", "Seconds the last model load took (load and warm-up).",
    multiprocess_mode="max",
)


@functools.lru_cache(maxsize=1024)
def requests_of(route: str, method: str, status: int):
    """The request counter's child for these labels, looked up once (a lookup costs more than the
    increment)."""
    return REQUESTS.labels(route=route, method=method, status=str(status))


@functools.lru_cache(maxsize=256)
def latency_of(route: str):
    """The latency histogram's child for ``route``, looked up once."""
    return LATENCY.labels(route=route)


def observe_inference(model: str, probabilities: np.ndarray) -> None:
    """Count one call of ``model``: its batch size and each image's predicted digit."""
    BATCH_SIZE.labels(model=model).observe(len(probabilities))
    for digit, count in enumerate(np.bincount(probabilities.argmax(axis=1), minlength=10)):
        if count:
            PREDICTED.labels(model=model, digit=str(digit)).inc(int(count))


def exposition(multiprocess_dir: Path | None) -> bytes:
    """The metrics in Prometheus' text format: summed over all workers from ``multiprocess_dir``
    when there is one, else this process's own."""
    if multiprocess_dir is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(multiprocess_dir))
    return generate_latest(registry)
