"""Model loading and inference: one model per worker process, loaded and warmed before serving.

TensorFlow is not fork-safe, so nothing here runs at import time: the server's lifespan calls
:meth:`Classifier.load` inside each worker after gunicorn has forked it. Inference goes through
a ``tf.function`` with a fixed input signature (traced once, during warm-up), not
``model.predict``, whose per-call overhead dwarfs this model's compute.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

import model_input
from train_mnist import metadata_path

log = logging.getLogger(__name__)


@dataclass
class Classifier:
    """A loaded model, its metadata, and its compiled inference function."""

    metadata: dict
    infer: Callable[[np.ndarray], Any]

    @classmethod
    def load(cls, model_path: str | os.PathLike) -> "Classifier":
        """Load a saved model and its metadata, check its input definition, and warm it up."""
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras
        import tensorflow as tf

        started = time.perf_counter()
        model_path = Path(model_path)
        metadata = json.loads(metadata_path(model_path).read_text())
        model_input.check_spec(metadata["input"])
        model = keras.saving.load_model(model_path, compile=False)

        @tf.function(input_signature=[tf.TensorSpec((None, *model_input.SHAPE), tf.float32)])
        def infer(batch):
            return model(batch, training=False)

        classifier = cls(metadata=metadata, infer=infer)
        classifier.predict(np.zeros((1, model_input.HEIGHT, model_input.WIDTH), np.uint8))
        log.info(
            "loaded %s version %s from %s in %.2f s (devices: %s)",
            metadata["name"], metadata["version"], model_path, time.perf_counter() - started,
            ", ".join(d.name for d in tf.config.list_logical_devices()),
        )
        return classifier

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (N, 10), for uint8 pixels of shape (N, 28, 28)."""
        return np.asarray(self.infer(model_input.to_model_input(pixels)))

    def classify(self, pixels: np.ndarray) -> dict:
        """The answer for one 28x28 image: digit, confidence, all ten probabilities, model."""
        probabilities = self.predict(pixels)[0]
        digit = int(np.argmax(probabilities))
        return {
            "digit": digit,
            "confidence": float(probabilities[digit]),
            "probabilities": [float(p) for p in probabilities],
            "model": self.metadata["name"],
            "model_version": self.metadata["version"],
        }
