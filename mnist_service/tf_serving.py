"""The TensorFlow Serving REST predict API's request and response bodies, as pure functions.

Row form ``{"instances": [...]}`` answers ``{"predictions": [...]}``; columnar form
``{"inputs": ...}`` (a list, or ``{"pixels": [...]}`` naming the model's input) answers
``{"outputs": [...]}``. Each instance is one image, either as the model input itself (28x28 or
28x28x1 nested lists, or 784 flat numbers, values 0-1, white digit on black: see model_input)
or as ``{"b64": "<base64 of an image file>"}``, which goes through the same normalisation as an
upload. :func:`parse_predict_request` turns a body into one item per instance, which the model's
micro-batcher classifies like the uploads of the other routes. Errors are TF Serving's
``{"error": "..."}`` (:func:`error_body`).
"""

from __future__ import annotations

import base64
import binascii

import numpy as np

from mnist_service import classifier, model_input
from mnist_service.errors import NoSuchModel, ServiceError

INPUT_NAME = "pixels"  # the Keras model's input layer
ACCEPTED_SHAPES = ((28, 28), (28, 28, 1), (784,))


class BadPredictRequest(ServiceError, ValueError):
    """The body is not a predict request this model can answer; the message says why."""

    status, title = 400, "Bad predict request"


def parse_predict_request(body, max_instances: int) -> tuple[list[bytes | np.ndarray], str]:
    """A predict request body -> (one item per instance: the image file of a ``b64`` instance, or
    the model input (28, 28, 1) of a numeric one; the response key: predictions or outputs)."""
    if not isinstance(body, dict):
        raise BadPredictRequest('the body must be a JSON object with "instances" or "inputs"')
    signature = body.get("signature_name", "serving_default")
    if signature != "serving_default":
        raise BadPredictRequest(f'unknown signature_name "{signature}"; this model has "serving_default"')
    if ("instances" in body) == ("inputs" in body):
        raise BadPredictRequest('give exactly one of "instances" (row form) or "inputs" (columnar form)')
    if "instances" in body:
        items, key = body["instances"], "predictions"
    else:
        items, key = body["inputs"], "outputs"
        if isinstance(items, dict):
            if set(items) != {INPUT_NAME}:
                raise BadPredictRequest(f'"inputs" names the model input "{INPUT_NAME}" only, got {sorted(items)}')
            items = items[INPUT_NAME]
    if not isinstance(items, list) or not items:
        raise BadPredictRequest("the instances must be a non-empty list, one entry per image")
    if len(items) > max_instances:
        raise BadPredictRequest(f"{len(items)} instances; at most {max_instances} per request")
    return [b64_file(item, index) if isinstance(item, dict) else tensor_to_input(item, index)
            for index, item in enumerate(items)], key


def b64_file(instance: dict, index: int) -> bytes:
    """The image file of a ``{"b64": ...}`` instance."""
    where = f"instance {index}"
    if set(instance) != {"b64"} or not isinstance(instance["b64"], str):
        raise BadPredictRequest(f'{where}: an object instance is {{"b64": "<base64 image bytes>"}}')
    try:
        return base64.b64decode(instance["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise BadPredictRequest(f"{where}: b64 is not valid base64") from None


def tensor_to_input(instance, index: int) -> np.ndarray:
    """An instance given as the model input itself (nested lists of numbers) -> (28, 28, 1)."""
    where = f"instance {index}"
    try:
        array = np.asarray(instance, dtype=np.float32)
    except (ValueError, TypeError):
        array = None
    if array is None or array.shape not in ACCEPTED_SHAPES:
        raise BadPredictRequest(f"{where}: expected 28x28, 28x28x1 or 784 numbers, or {{\"b64\": ...}}")
    try:
        return model_input.check_model_input(array.reshape((1, *model_input.SHAPE)))[0]
    except ValueError as error:
        raise BadPredictRequest(f"{where}: {error}") from None


def probabilities(results: list[np.ndarray | Exception]) -> np.ndarray:
    """The classified instances' probabilities, (N, 10); an instance whose image cannot be read
    makes the request a BadPredictRequest, and any other error is raised as it is."""
    return classifier.stacked(results, lambda index, error: BadPredictRequest(f"instance {index}: {error}"))


def predict_response(probabilities: np.ndarray, key: str) -> dict:
    """The response body: one list of ten probabilities per instance, under ``key``."""
    return {key: probabilities.astype(float).tolist()}


def status_body(state: str, version: str, error: str | None) -> dict:
    """The model status body of a model slot's state ('loading', 'ready' or 'failed')."""
    return {
        "model_version_status": [{
            "version": "".join(ch for ch in version if ch.isdigit()),
            "state": {"loading": "LOADING", "ready": "AVAILABLE", "failed": "END"}[state],
            "status": {"error_code": "UNKNOWN" if state == "failed" else "OK", "error_message": error or ""},
        }]
    }


def error_body(error: ServiceError) -> tuple[dict, int]:
    """TF Serving's error answer and its status for an error of the predict or status routes."""
    if isinstance(error, NoSuchModel):
        return {"error": f"Servable not found for request: Latest({error.name})"}, error.status
    return {"error": str(error)}, error.status
