"""The JSON answers of the upload routes and the model descriptions of ``/models``, as pure
functions of what the model said and what its metadata records."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def answers(probabilities: np.ndarray, metadata: dict, uncertain_below: float) -> list[dict]:
    """The answer for each image's probabilities, shape (N, 10): digit, confidence, whether it is
    uncertain (confidence below ``uncertain_below``), all ten probabilities, the model and its
    version (one NumPy call for all of them)."""
    digits = probabilities.argmax(axis=1).tolist()
    name, version = metadata["name"], metadata["version"]
    return [
        {"digit": digit, "confidence": row[digit], "uncertain": row[digit] < uncertain_below,
         "probabilities": row, "model": name, "model_version": version}
        for digit, row in zip(digits, probabilities.tolist())
    ]


def answer(probabilities: np.ndarray, metadata: dict, uncertain_below: float) -> dict:
    """The answer for one image's probabilities, shape (10,)."""
    return answers(probabilities[np.newaxis], metadata, uncertain_below)[0]


def model_input(found) -> dict:
    """What the model was given for an upload (normalise.Found), as an answer shows it: the 28x28
    pixels as a grayscale PNG in base64 (the digit white on black, as the model sees it), and the
    box the digit was found in, as shares of the upright image's width and height."""
    png = io.BytesIO()
    Image.fromarray(found.pixels, "L").save(png, "PNG")
    left, top, right, bottom = found.box
    return {"png": base64.b64encode(png.getvalue()).decode("ascii"),
            "box": {"left": round(left, 4), "top": round(top, 4), "right": round(right, 4), "bottom": round(bottom, 4)}}


def description(slot, default: bool) -> dict:
    """What ``/models`` says of a model slot (registry.ModelSlot): its metadata, state, engine and
    devices, and the batching values in force (the loaded model's batcher, else the settings it
    will be loaded with)."""
    meta, classifier = slot.metadata, slot.classifier
    devices = classifier.engine.devices if classifier else []
    if classifier:
        max_batch, max_wait = classifier.batcher.max_batch, classifier.batcher.max_wait
    else:
        max_batch, max_wait = slot.settings.batch_max_size, slot.settings.batch_max_wait_ms / 1000
    return {
        "name": meta["name"],
        "version": meta["version"],
        "default": default,
        "state": slot.state,
        "input": meta["input"],
        "classes": meta["classes"],
        "test_accuracy": meta["test_accuracy"],
        "trained_at": meta["trained_at"],
        "data_sha256": meta["data_sha256"],
        "parameters": meta["parameters"],
        "versions": meta["versions"],
        "engine": classifier.engine.name if classifier else None,
        "devices": devices,
        "gpu": any(":GPU:" in device for device in devices),
        "batching": {"max_batch_size": max_batch, "max_wait_ms": max_wait * 1000},
    }
