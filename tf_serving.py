"""The TensorFlow Serving REST predict API's request and response bodies, as pure functions.

Row form ``{"instances": [...]}`` answers ``{"predictions": [...]}``; columnar form
``{"inputs": ...}`` (a list, or ``{"pixels": [...]}`` naming the model's input) answers
``{"outputs": [...]}``. Each instance is one image, either as the model input itself (28x28 or
28x28x1 nested lists, or 784 flat numbers, values 0-1, white digit on black: see model_input)
or as ``{"b64": "<base64 of an image file>"}``, which goes through the same normalisation as an
upload. Errors are TF Serving's ``{"error": "..."}``.
"""

from __future__ import annotations

import base64
import binascii
import os

import numpy as np

import model_input
import preprocess

# Most images in one predict request.
MAX_INSTANCES = int(os.environ.get("MAX_INSTANCES", 128))
INPUT_NAME = "pixels"  # the Keras model's input layer
ACCEPTED_SHAPES = ((28, 28), (28, 28, 1), (784,))


class BadPredictRequest(ValueError):
    """The body is not a predict request this model can answer; the message says why."""


def parse_predict_request(body) -> tuple[np.ndarray, str]:
    """A predict request body -> (model input batch, the response key: predictions or outputs)."""
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
    if len(items) > MAX_INSTANCES:
        raise BadPredictRequest(f"{len(items)} instances; at most {MAX_INSTANCES} per request")
    return np.concatenate(instances_to_input(items)), key


def instances_to_input(items: list) -> list[np.ndarray]:
    """Each instance -> model input of shape (1, 28, 28, 1); the image files of ``b64`` instances
    are normalised together, as the uploads of a batch are (preprocess.uploads_to_pixels)."""
    inputs: list = [None] * len(items)
    files: dict[int, bytes] = {}
    for index, item in enumerate(items):
        if isinstance(item, dict):
            files[index] = b64_file(item, index)
        else:
            inputs[index] = tensor_to_input(item, index)
    for index, pixels in zip(files, preprocess.uploads_to_pixels(list(files.values()))):
        if isinstance(pixels, preprocess.UploadError):
            raise BadPredictRequest(f"instance {index}: {pixels}")
        if isinstance(pixels, Exception):
            raise pixels
        inputs[index] = model_input.to_model_input(pixels)
    return inputs


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
    """An instance given as the model input itself (nested lists of numbers) -> (1, 28, 28, 1)."""
    where = f"instance {index}"
    try:
        array = np.asarray(instance, dtype=np.float32)
    except (ValueError, TypeError):
        array = None
    if array is None or array.shape not in ACCEPTED_SHAPES:
        raise BadPredictRequest(f"{where}: expected 28x28, 28x28x1 or 784 numbers, or {{\"b64\": ...}}")
    try:
        return model_input.check_model_input(array.reshape((1, *model_input.SHAPE)))
    except ValueError as error:
        raise BadPredictRequest(f"{where}: {error}") from None


def predict_response(probabilities: np.ndarray, key: str) -> dict:
    """The response body: one list of ten probabilities per instance, under ``key``."""
    return {key: probabilities.astype(float).tolist()}
