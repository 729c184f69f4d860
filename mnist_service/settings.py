"""The server's settings: every one read from the environment once, at start, into a frozen object.

``Settings.from_env()`` is called once by ``server.py``; the object is passed down from
``create_app`` to the model registry, the engines, the micro-batchers, the upload limits and the
handlers, so nothing below reads the environment itself. A value that cannot be used stops the
server with a :class:`SettingsError` that names the variable and what it accepts. Each field
carries its variable, its description and its check; ``python -m mnist_service.settings`` prints
them as the README's configuration table (a test keeps the two in step).

gunicorn's own settings (HOST, PORT, WORKERS, WORKER_TIMEOUT) are read by ``gunicorn.conf.py``,
and training's (MNIST_DATA, EPOCHS) by training, as those programs expect.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_service.artifacts import DEFAULT_MODEL_DIR

ENGINES = ("litert-int8", "litert-float32", "tensorflow")


class SettingsError(ValueError):
    """A setting's value cannot be used; the message names the variable and what it accepts."""


@dataclass(frozen=True)
class Kind:
    """How a setting's text is read and checked: ``parse`` turns it into the value (ValueError if it
    cannot), ``check`` says whether a value is acceptable, ``accepts`` says what is."""

    parse: Callable[[str], Any]
    accepts: str
    check: Callable[[Any], bool] = lambda value: True


def whole(least: int) -> Kind:
    return Kind(int, f"a whole number of at least {least}", lambda value: value >= least)


def number(least: float, most: float | None = None) -> Kind:
    if most is None:
        return Kind(float, f"a number of at least {least:g}", lambda value: value >= least)
    return Kind(float, f"a number from {least:g} to {most:g}", lambda value: least <= value <= most)


def one_of(*choices: str) -> Kind:
    return Kind(str, f"one of {', '.join(choices)}", lambda value: value in choices)


NAME = Kind(str, "a model name (not empty)", lambda value: bool(value))
FOLDER = Kind(Path, "a folder path")
OPTIONAL_FOLDER = Kind(lambda text: Path(text) if text else None, "a folder path, or empty for none")


def setting(variable: str, default: Any, kind: Kind, shown: str, description: str) -> Any:
    """A field of Settings read from ``variable``; ``shown`` is its default as the README shows it."""
    return dataclasses.field(default=default, metadata={
        "variable": variable, "kind": kind, "shown": shown, "description": description})


@dataclass(frozen=True)
class Settings:
    """Everything the server is configured with; see the README's configuration table."""

    model_dir: Path = setting(
        "MODEL_DIR", DEFAULT_MODEL_DIR, FOLDER, "`var/data/`",
        "The folder of models to serve: every `*.keras` file, with its LiteRT flatbuffers and its metadata "
        "(the `.json`) beside it.")
    default_model: str = setting(
        "DEFAULT_MODEL", "mnist-cnn", NAME, "`mnist-cnn`",
        "The model that answers requests naming none (`?model=`); it must be in `MODEL_DIR`.")
    engine: str = setting(
        "INFERENCE_ENGINE", "litert-int8", one_of(*ENGINES), "`litert-int8` (`tensorflow` in the GPU image)",
        "What runs the models: the LiteRT interpreter (CPU) with int8 weights or the trained float32 "
        "weights (`litert-float32`), or TensorFlow (`tensorflow`, CPU or GPU).")
    inference_threads: int = setting(
        "TF_NUM_INTRAOP_THREADS", 1, whole(1), "`1`",
        "Threads of each worker's model runtime: LiteRT's interpreter threads; TensorFlow reads it "
        "itself, with `TF_NUM_INTEROP_THREADS`.")
    litert_slice_size: int = setting(
        "LITERT_SLICE_SIZE", 16, whole(1), "`16`",
        "Most images the LiteRT interpreter runs in one invocation; a larger batch runs in slices of "
        "this many.")
    batch_max_size: int = setting(
        "BATCH_MAX_SIZE", 64, whole(1), "`64`",
        "Most images in one model call of a worker's micro-batcher.")
    batch_max_wait_ms: float = setting(
        "BATCH_MAX_WAIT_MS", 0.0, number(0), "`0`",
        "How long a batch that is not full waits for more requests; it delays a lone request by as much.")
    max_upload_bytes: int = setting(
        "MAX_UPLOAD_BYTES", 4 * 1024 * 1024, whole(1), "`4194304` (4 MiB)",
        "Largest request body; a larger one gets 413, by its `Content-Length` before it is read, or as "
        "soon as a chunked body passes the limit.")
    max_image_pixels: int = setting(
        "MAX_IMAGE_PIXELS", 16_000_000, whole(1), "`16000000`",
        "Largest image accepted (width x height, e.g. 4000x4000); larger ones get 413 before they are "
        "decoded.")
    max_instances: int = setting(
        "MAX_INSTANCES", 128, whole(1), "`128`",
        "Most images in one TF Serving predict or Open Inference Protocol infer request.")
    uncertain_below: float = setting(
        "UNCERTAIN_BELOW", 0.8, number(0, 1), "`0.8`",
        'An answer whose confidence is below this has `"uncertain": true`.')
    model_wait_seconds: float = setting(
        "MODEL_WAIT_SECONDS", 5.0, number(0), "`5`",
        "How long a prediction waits for a worker's model that is still loading before it gets 503.")
    max_request_pixels: int = setting(
        "MAX_REQUEST_PIXELS", 50_000_000, whole(1), "`50000000`",
        "Most pixels the images of one request may declare together (a batch of large photos); past it "
        "the request gets 413 before any image is decoded.")
    max_in_flight: int = setting(
        "MAX_IN_FLIGHT", 32, whole(1), "`32`",
        "Most inference requests (POST) a worker runs at once; the next ones wait in line for a slot.")
    max_queued: int = setting(
        "MAX_QUEUED", 512, whole(0), "`512`",
        "Most inference requests a worker lets wait in line past `MAX_IN_FLIGHT` (uvicorn stops reading a "
        "waiting request's body past 64 KiB); one more is shed at once: 503 with `Retry-After`.")
    max_queue_wait_ms: float = setting(
        "MAX_QUEUE_WAIT_MS", 2000.0, number(1), "`2000`",
        "Longest a request may wait: in line for a slot (one whose line is expected to take longer, from "
        "the requests ahead and the recent time a request takes, is shed at once), and in a busy model "
        "queue (the images queued times the recent time an image takes); past it, 503 with `Retry-After`.")
    headers_timeout_seconds: float = setting(
        "HEADERS_TIMEOUT_SECONDS", 10.0, number(0.1), "`10`",
        "A connection whose request headers are not complete this long after it opened (or after its "
        "last answer) gets 408 and is closed.")
    body_timeout_seconds: float = setting(
        "BODY_TIMEOUT_SECONDS", 15.0, number(0.1), "`15`",
        "A request body that has not fully arrived this long after its headers gets 408 (4 MiB in 15 s "
        "is 2.2 Mbit/s).")
    request_timeout_seconds: float = setting(
        "REQUEST_TIMEOUT_SECONDS", 10.0, number(0.1), "`10`",
        "A request's processing deadline, from its whole body to its answer; past it, 504.")
    drain_seconds: float = setting(
        "DRAIN_SECONDS", 5.0, number(0), "`5`",
        "On SIGTERM, how long a worker keeps serving with `/health/ready` at 503 (so load balancers stop "
        "sending) before it stops accepting and finishes what it holds.")
    metrics_dir: Path | None = setting(
        "PROMETHEUS_MULTIPROC_DIR", None, OPTIONAL_FOLDER, "a new temporary folder (gunicorn.conf.py)",
        "Where the workers' metrics live, summed by `/metrics`; emptied when gunicorn starts. Unset "
        "(`python server.py`), the process's own metrics are served.")

    def __post_init__(self):
        for field in dataclasses.fields(self):
            kind, value = field.metadata["kind"], getattr(self, field.name)
            if value is not None and not kind.check(value):
                raise SettingsError(f'{field.metadata["variable"]} is {value!r}; it is {kind.accepts}')

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings given in ``environ`` (default: this process's environment), the rest default."""
        environ = os.environ if environ is None else environ
        values = {}
        for field in dataclasses.fields(cls):
            variable, kind = field.metadata["variable"], field.metadata["kind"]
            if variable in environ:
                text = environ[variable].strip()
                try:
                    values[field.name] = kind.parse(text)
                except ValueError:
                    raise SettingsError(f'{variable} is "{text}"; it is {kind.accepts}') from None
        return cls(**values)


def markdown_table() -> str:
    """The README's table of these settings: variable, default, meaning."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for field in dataclasses.fields(Settings):
        meta = field.metadata
        rows.append(f"| `{meta['variable']}` | {meta['shown']} | {meta['description']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
