"""HTTP handlers for the routes in models.yaml, each named by its operationId.

A handler turns HTTP input into a domain call and the result into JSON; routing, request
validation and error rendering (RFC 7807 problem JSON) are connexion's. The worker's model is
``request.state.model`` (a classifier.ModelSlot, set by the server's lifespan).
"""

import os

from connexion import request
from connexion.exceptions import ProblemException

import metrics
import preprocess
import tf_serving
from classifier import ModelNotReady

# The spec declares problem JSON for errors too, so a handler names the content type of its answer.
JSON = {"Content-Type": "application/json"}
# How long a request waits for a worker's model that is still loading before it gets 503.
MODEL_WAIT_SECONDS = float(os.environ.get("MODEL_WAIT_SECONDS", "30"))
RETRY_AFTER = {"Retry-After": "5"}


def _classifier():
    try:
        return request.state.model.get(timeout=MODEL_WAIT_SECONDS)
    except ModelNotReady as error:
        raise ProblemException(status=503, title="Model not ready", detail=str(error), headers=RETRY_AFTER) from None


def _slot(name: str):
    slot = request.state.model
    if name != slot.metadata["name"]:
        raise ProblemException(status=404, title="No such model", detail=f'no model named "{name}"; see /models')
    return slot


def classify(file):
    """POST /mnist/classify: one uploaded image -> its digit and class probabilities."""
    try:
        pixels = preprocess.upload_to_pixels(file.file.read())
    except preprocess.ImageTooLarge as error:
        raise ProblemException(status=413, title="Image too large", detail=str(error)) from None
    except preprocess.UnreadableImage as error:
        raise ProblemException(status=415, title="Unreadable image", detail=str(error)) from None
    except preprocess.NoDigitFound as error:
        raise ProblemException(status=422, title="No digit found", detail=str(error)) from None
    answer = _classifier().classify(pixels)
    request.state.digits = [answer["digit"]]
    return answer, 200, JSON


def live():
    """GET /health/live: the process is up and serving HTTP."""
    return {"status": "alive"}, 200, JSON


def ready():
    """GET /health/ready: 200 once this worker's model is loaded and warm, else 503 and why."""
    slot = request.state.model
    if slot.state != "ready":
        raise ProblemException(status=503, title="Not ready", detail=slot.reason(), headers=RETRY_AFTER)
    return {"status": "ready", "model": slot.metadata["name"], "version": slot.metadata["version"]}, 200, JSON


def prometheus_metrics():
    """GET /metrics: Prometheus text format, summed over all workers."""
    return metrics.exposition(), 200, {"Content-Type": metrics.CONTENT_TYPE}


def describe(slot) -> dict:
    """What is served: the model's metadata, its state and the devices it runs on."""
    meta = slot.metadata
    devices = slot.classifier.devices if slot.classifier else []
    return {
        "name": meta["name"],
        "version": meta["version"],
        "state": slot.state,
        "input": meta["input"],
        "classes": meta["classes"],
        "test_accuracy": meta["test_accuracy"],
        "trained_at": meta["trained_at"],
        "data_sha256": meta["data_sha256"],
        "parameters": meta["parameters"],
        "versions": meta["versions"],
        "devices": devices,
        "gpu": any(":GPU:" in device for device in devices),
    }


def list_models():
    """GET /models: every model this server serves."""
    return {"models": [describe(request.state.model)]}, 200, JSON


def get_model(name):
    """GET /models/{name}: one model's metadata."""
    return describe(_slot(name)), 200, JSON


def _tf_error(status: int, message: str):
    return {"error": message}, status, JSON


def tf_serving_predict(name, body):
    """POST /v1/models/{name}:predict: TensorFlow Serving's REST predict API."""
    slot = request.state.model
    if name != slot.metadata["name"]:
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
    slot = request.state.model
    if name != slot.metadata["name"]:
        return _tf_error(404, f"Servable not found for request: Latest({name})")
    state = {"loading": "LOADING", "ready": "AVAILABLE", "failed": "END"}[slot.state]
    error_code = "UNKNOWN" if slot.state == "failed" else "OK"
    version = "".join(ch for ch in slot.metadata["version"] if ch.isdigit())
    return {
        "model_version_status": [
            {"version": version, "state": state, "status": {"error_code": error_code, "error_message": slot.error or ""}}
        ]
    }, 200, JSON
