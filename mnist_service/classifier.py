"""A loaded model: class probabilities for a batch of items, in one model call.

An item is an uploaded file's bytes, decoded and normalised like any upload
(:func:`normalise.uploads_to_pixels`), or one image's model input given as a tensor (float32,
(28, 28, 1), checked by :func:`model_input.check_model_input`), as TF Serving's numeric instances
are. Every inference route hands its items to the classifier's micro-batcher, which runs
:meth:`Classifier.classify` on whatever requests are queued in its own thread: the readable items
go through the model in one call, never ``model.predict``, whose per-call overhead dwarfs this
model's compute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnist_service import artifacts, metrics, model_input, normalise
from mnist_service.batching import MicroBatcher
from mnist_service.engines import Engine, load_engine
from mnist_service.settings import Settings

Item = bytes | np.ndarray  # an uploaded file, or one image's model input


@dataclass
class Classifier:
    """A model's metadata, its engine, and the micro-batcher its requests go through."""

    metadata: dict
    engine: Engine
    settings: Settings = field(default_factory=Settings)
    batcher: MicroBatcher = field(init=False, repr=False)

    def __post_init__(self):
        self.batcher = MicroBatcher(self.classify, max_batch=self.settings.batch_max_size,
                                    max_wait=self.settings.batch_max_wait_ms / 1000)

    @classmethod
    def load(cls, model_path: str | Path, metadata: dict | None = None, settings: Settings | None = None
             ) -> Classifier:
        """Load a saved model (its metadata read and checked unless given) for the engine the
        settings name, and warm it up."""
        settings = settings or Settings()
        metadata = metadata or artifacts.read_metadata(Path(model_path))
        return cls(metadata, load_engine(Path(model_path), settings), settings)

    def predict_inputs(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (N, 10), for model input (see model_input.check_model_input)."""
        probabilities = self.engine.infer(model_input.check_model_input(batch))
        metrics.observe_inference(self.metadata["name"], probabilities)
        return probabilities

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (N, 10), for uint8 pixels of shape (N, 28, 28)."""
        return self.predict_inputs(model_input.to_model_input(pixels))

    def classify(self, items: list[Item]) -> list[np.ndarray | Exception]:
        """For each item, its class probabilities (10,), or the error that says why it has none (an
        UploadError, or whatever else decoding raised, which then fails only its own item). The
        uploads are normalised together and all readable items go through the model in one call."""
        uploads = [n for n, item in enumerate(items) if isinstance(item, bytes)]
        decoded = normalise.uploads_to_pixels([items[n] for n in uploads], self.settings.max_image_pixels)
        results = list(items)
        for n, result in zip(uploads, decoded):
            results[n] = result
        readable = [n for n, result in enumerate(results) if not isinstance(result, Exception)]
        if not readable:
            return results
        is_upload = set(uploads)
        pixel_rows = [row for row, n in enumerate(readable) if n in is_upload]
        tensor_rows = [row for row, n in enumerate(readable) if n not in is_upload]
        batch = np.empty((len(readable), *model_input.SHAPE), np.float32)
        for rows, convert in ((pixel_rows, model_input.to_model_input), (tensor_rows, np.asarray)):
            if rows:
                batch[rows] = convert(np.stack([results[readable[row]] for row in rows]))
        for n, probabilities in zip(readable, self.predict_inputs(batch)):
            results[n] = probabilities
        return results
