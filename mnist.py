"""HTTP handlers for the routes in models.yaml, each named by its operationId.

A handler turns HTTP input into a domain call and the result into JSON; routing, request
validation and error rendering (RFC 7807 problem JSON) are connexion's. The worker's models are
``request.state.models`` (a classifier.ModelShelf, set by the server's lifespan).
"""

import os
from pathlib import Path

import numpy as np
from anyio import to_thread
from connexion import request
from connexion.exceptions import ProblemException

import batching
import metrics
import preprocess
import tf_serving
from classifier import Classifier, ModelNotReady, ModelSlot

# The spec declares problem JSON for errors too, so a handler names the content type of its answer.
JSON = {"Content-Type": "application/json"}
# How long a request waits for a worker's model that is still loading before it gets 503.
MODEL_WAIT_SECONDS = float(os.environ.get("MODEL_WAIT_SECONDS", "30"))
RETRY_AFTER = {"Retry-After": "5"}
# The drawing page served at GET / (one self-contained file: no build step, nothing fetched elsewhere).
PAGE = Path(__file__).resolve().parent / "web" / "index.html"
# What an upload that cannot be classified gets: status and title of its problem.
UPLOAD_PROBLEMS = {
    preprocess.ImageTooLarge: (413, "Image too large"),
    preprocess.UnreadableImage: (415, "Unreadable image"),
    preprocess.NoDigitFound: (422, "No digit found"),
}


def _slot(name: str | None = None) -> ModelSlot:
    """The slot of the model called ``name`` (the default model for None), else a 404 problem."""
    try:
        return request.state.models.slot(name)
    except KeyError:
        raise ProblemException(status=404, title="No such model",
                               detail=f'no model named "{name}"; see /models') from None


async def _classifier(name: str | None) -> Classifier:
    """The named model, waiting (off the event loop) up to MODEL_WAIT_SECONDS while it loads."""
    slot = _slot(name)
    if slot.classifier is not None:
        return slot.classifier
    try:
        return await to_thread.run_sync(slot.get, MODEL_WAIT_SECONDS)
    except ModelNotReady as error:
        raise ProblemException(status=503, title="Model not ready", detail=str(error), headers=RETRY_AFTER) from None


def _problem(result: np.ndarray | Exception) -> dict | None:
    """The problem (a dict) of an upload that could not be classified, None if it was; an error
    that is not the upload's fault is raised (500)."""
    if not isinstance(result, Exception):
        return None
    if not isinstance(result, preprocess.UploadError):
        raise result
    status, title = UPLOAD_PROBLEMS[type(result)]
    return {"type": "about:blank", "title": title, "status": status, "detail": str(result)}


async def classify(file, model=None):
    """POST /mnist/classify: one uploaded image -> its digit and class probabilities."""
    classifier = await _classifier(model)
    (result,) = await classifier.batcher.submit([file.file.read()])  # decoded in the batcher's thread
    if problem := _problem(result):
        raise ProblemException(status=problem["status"], title=problem["title"], detail=problem["detail"])
    answer = classifier.answer(result)
    request.state.digits = [answer["digit"]]
    return answer, 200, JSON


async def classify_batch(files, model=None):
    """POST /mnist/classify/batch: several images -> one result each, in order; an image that
    cannot be read gets its problem in its place."""
    classifier = await _classifier(model)
    outcomes = await classifier.batcher.submit([file.file.read() for file in files])
    problems = [_problem(outcome) for outcome in outcomes]
    readable = [outcome for outcome, problem in zip(outcomes, problems) if problem is None]
    answers = iter(classifier.answers(np.stack(readable)) if readable else ())
    results = [{"filename": file.filename, "error": problem} if problem
               else {"filename": file.filename, **next(answers)}
               for file, problem in zip(files, problems)]
    request.state.digits = [result["digit"] for result in results if "digit" in result]
    return {"results": results, "model": classifier.metadata["name"],
            "model_version": classifier.metadata["version"]}, 200, JSON


def draw_page():
    """GET /: the drawing page, which posts the canvas to /mnist/classify once per model."""
    return PAGE.read_text(encoding="utf-8"), 200, {"Content-Type": "text/html; charset=utf-8"}


def live():
    """GET /health/live: the process is up and serving HTTP."""
    return {"status": "alive"}, 200, JSON


def ready():
    """GET /health/ready: 200 once every model of this worker is loaded and warm, else 503 and why."""
    shelf = request.state.models
    if shelf.state != "ready":
        raise ProblemException(status=503, title="Not ready", detail=shelf.reason(), headers=RETRY_AFTER)
    default = shelf.slot().metadata
    return {"status": "ready", "model": default["name"], "version": default["version"],
            "models": sorted(shelf.slots)}, 200, JSON


def prometheus_metrics():
    """GET /metrics: Prometheus text format, summed over all workers."""
    return metrics.exposition(), 200, {"Content-Type": metrics.CONTENT_TYPE}


def describe(slot: ModelSlot) -> dict:
    """What is served: the model's metadata, its state and the devices it runs on."""
    meta = slot.metadata
    devices = slot.classifier.devices if slot.classifier else []
    return {
        "name": meta["name"],
        "version": meta["version"],
        "default": meta["name"] == request.state.models.default,
        "state": slot.state,
        "input": meta["input"],
        "classes": meta["classes"],
        "test_accuracy": meta["test_accuracy"],
        "trained_at": meta["trained_at"],
        "data_sha256": meta["data_sha256"],
        "parameters": meta["parameters"],
        "versions": meta["versions"],
        "engine": slot.classifier.engine if slot.classifier else None,
        "devices": devices,
        "gpu": any(":GPU:" in device for device in devices),
        "batching": {"max_batch_size": batching.MAX_BATCH, "max_wait_ms": batching.MAX_WAIT_SECONDS * 1000},
    }


def list_models():
    """GET /models: every model this server serves, the default first."""
    shelf = request.state.models
    names = sorted(shelf.slots, key=lambda name: (name != shelf.default, name))
    return {"models": [describe(shelf.slot(name)) for name in names]}, 200, JSON


def get_model(name):
    """GET /models/{name}: one model's metadata."""
    return describe(_slot(name)), 200, JSON


def _tf_error(status: int, message: str):
    return {"error": message}, status, JSON


def tf_serving_predict(name, body):
    """POST /v1/models/{name}:predict: TensorFlow Serving's REST predict API."""
    slot = request.state.models.slots.get(name)
    if slot is None:
        return _tf_error(404, f"Servable not found for request: Latest({name})")
    try:
        batch, key = tf_serving.parse_predict_request(body)
    except tf_serving.BadPredictRequest as error:
        return _tf_error(400, str(error))
    try:
        classifier = slot.get(timeout=MODEL_WAIT_SECONDS)
    except ModelNotReady as error:
        return _tf_error(503, str(error))
    probabilities = classifier.predict_inputs(batch)
    request.state.digits = probabilities.argmax(axis=1).tolist()
    return tf_serving.predict_response(probabilities, key), 200, JSON


def tf_serving_status(name):
    """GET /v1/models/{name}: TensorFlow Serving's model status."""
    slot = request.state.models.slots.get(name)
    if slot is None:
        return _tf_error(404, f"Servable not found for request: Latest({name})")
    state = {"loading": "LOADING", "ready": "AVAILABLE", "failed": "END"}[slot.state]
    error_code = "UNKNOWN" if slot.state == "failed" else "OK"
    version = "".join(ch for ch in slot.metadata["version"] if ch.isdigit())
    return {
        "model_version_status": [
            {"version": version, "state": state, "status": {"error_code": error_code, "error_message": slot.error or ""}}
        ]
    }, 200, JSON
