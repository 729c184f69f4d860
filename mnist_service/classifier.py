"""A loaded model: class probabilities for a batch of items, in one model call.

An item is an uploaded file (its bytes, or the image Pillow opened from them), decoded and
normalised like any upload (mnist_service.normalise), or one image's model input given as a
tensor (float32, (28, 28, 1), checked by :func:`model_input.check_model_input`), as TF Serving's
numeric instances are. Every inference route hands a request's items to :meth:`Classifier.submit`:

- the uploads are opened (headers only) at once: the pixels they declare together must be within
  the per-request budget (MAX_REQUEST_PIXELS, else 413 before anything is decoded);
- large images (over ``HEAVY_PIXELS``) are decoded and normalised in the model's *heavy lane*, a
  micro-batcher of their own whose thread runs at a lower priority, so a batch of small uploads
  never waits behind a 4000x4000 decode; they join the rest normalised (normalise.Found);
- everything else goes to the model's micro-batcher, which runs :meth:`Classifier.classify` on
  whatever requests are queued, in its own thread: the readable items go through the model in
  one call, never ``model.predict``, whose per-call overhead dwarfs this model's compute. Only
  that thread runs the model (a LiteRT interpreter serves one call at a time).

Asked ``with_input``, :meth:`Classifier.submit` answers each item with what the model was given
too (:class:`Classified`): for an upload, its 28x28 pixels and the box its digit was found in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from mnist_service import artifacts, metrics, model_input, normalise
from mnist_service.batching import MicroBatcher
from mnist_service.engines import Engine, load_engine
from mnist_service.errors import Overloaded, RequestTooLarge, ServiceError, UploadError
from mnist_service.settings import Settings

# An uploaded file, opened or not, or normalised (by the heavy lane); or one image's model input.
Item = bytes | Image.Image | normalise.Found | np.ndarray
# Images larger than the normalisation's working size (it reduces them first) go to the heavy lane.
HEAVY_PIXELS = normalise.WORKING_SIDE**2
HEAVY_NICE = 10  # the heavy lane's thread gets about a tenth of a core's share when light work competes


@dataclass(frozen=True)
class Classified:
    """One item's class probabilities (10,), and for an upload what its normalisation gave the model."""

    probabilities: np.ndarray
    found: normalise.Found | None = None


def probabilities_of(results: list[Classified | Exception]) -> list[np.ndarray | Exception]:
    """The probabilities of each Classified of ``results``; errors stay as they are."""
    return [result.probabilities if isinstance(result, Classified) else result for result in results]


@dataclass
class Classifier:
    """A model's metadata, its engine, and the micro-batcher its requests go through."""

    metadata: dict
    engine: Engine
    settings: Settings = field(default_factory=Settings)
    batcher: MicroBatcher = field(init=False, repr=False)
    heavy_lane: MicroBatcher = field(init=False, repr=False)

    def __post_init__(self):
        self.batcher = MicroBatcher(self.classified, max_batch=self.settings.batch_max_size,
                                    max_wait=self.settings.batch_max_wait_ms / 1000)
        self.heavy_lane = MicroBatcher(normalise.images_to_found, max_batch=self.settings.batch_max_size,
                                       nice=HEAVY_NICE)

    @classmethod
    def load(cls, model_path: str | Path, metadata: dict | None = None, settings: Settings | None = None
             ) -> Classifier:
        """Load a saved model (its metadata read and checked unless given) for the engine the
        settings name, and warm it up."""
        settings = settings or Settings()
        metadata = metadata or artifacts.read_metadata(Path(model_path))
        return cls(metadata, load_engine(Path(model_path), settings), settings)

    async def submit(self, items: list[Item], with_input: bool = False) -> list[np.ndarray | Classified | Exception]:
        """For each item of one request, its class probabilities (with ``with_input``, a Classified:
        the probabilities and what the model was given) or the error that says why it has none (see
        classify); RequestTooLarge if its images declare more pixels than the budget."""
        opened = self._opened(items)
        sizes = [item.width * item.height if isinstance(item, Image.Image) else 0 for item in opened]
        if (total := sum(sizes)) > self.settings.max_request_pixels:
            raise RequestTooLarge(f"the images of this request declare {total} pixels together, over the budget "
                                  f"of {self.settings.max_request_pixels} a request (MAX_REQUEST_PIXELS)")
        heavy = [n for n, size in enumerate(sizes) if size > HEAVY_PIXELS]
        if heavy:
            self._admit(self.heavy_lane, "heavy lane")
            for n, result in zip(heavy, await self.heavy_lane.submit([opened[n] for n in heavy])):
                opened[n] = result
        results = list(opened)
        todo = [n for n, item in enumerate(opened) if not isinstance(item, UploadError)]
        if todo:
            self._admit(self.batcher, "queue")
            for n, result in zip(todo, await self.batcher.submit([opened[n] for n in todo])):
                results[n] = result
        return results if with_input else probabilities_of(results)

    def _opened(self, items: list[Item]) -> list[Item | Exception]:
        """``items``, each upload's bytes replaced by its opened image, or the error that says why it
        cannot be opened (normalise.open_uploads)."""
        opened = list(items)
        uploads = [n for n, item in enumerate(items) if isinstance(item, bytes)]
        for n, image in zip(uploads, normalise.open_uploads([items[n] for n in uploads],
                                                            self.settings.max_image_pixels)):
            opened[n] = image
        return opened

    def _admit(self, lane: MicroBatcher, name: str) -> None:
        """Shed the request (Overloaded) if what is queued in ``lane`` would make it wait longer than
        MAX_QUEUE_WAIT_MS; a request that finds the lane empty is always admitted."""
        wait = lane.expected_wait()
        if wait > self.settings.max_queue_wait_ms / 1000:
            metrics.SHED.labels(reason="queue").inc()
            raise Overloaded(f"the model's {name} holds {lane.pending} images, about {wait * 1000:.0f} ms of work, "
                             f"over {self.settings.max_queue_wait_ms:g} ms (MAX_QUEUE_WAIT_MS); retry in a second")

    def predict_inputs(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (N, 10), for model input (see model_input.check_model_input)."""
        probabilities = self.engine.infer(model_input.check_model_input(batch))
        metrics.observe_inference(self.metadata["name"], probabilities)
        return probabilities

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (N, 10), for uint8 pixels of shape (N, 28, 28)."""
        return self.predict_inputs(model_input.to_model_input(pixels))

    def classify(self, items: list[Item]) -> list[np.ndarray | Exception]:
        """For each item, its class probabilities (10,), or the error that says why it has none (see
        classified)."""
        return probabilities_of(self.classified(items))

    def classified(self, items: list[Item]) -> list[Classified | Exception]:
        """For each item, its class probabilities and what the model was given (a Classified), or the
        error that says why it has none (an UploadError, or whatever else decoding raised, which then
        fails only its own item). The uploads are normalised together and all readable items go
        through the model in one call."""
        opened = self._opened(items)
        uploads = [n for n, item in enumerate(opened) if not isinstance(item, np.ndarray | normalise.Found)]
        results: list = list(opened)
        for n, result in zip(uploads, normalise.images_to_found([opened[n] for n in uploads])):
            results[n] = result
        readable = [n for n, result in enumerate(results) if not isinstance(result, Exception)]
        if not readable:
            return results
        found_rows = [row for row, n in enumerate(readable) if isinstance(results[n], normalise.Found)]
        tensor_rows = [row for row, n in enumerate(readable) if not isinstance(results[n], normalise.Found)]
        batch = np.empty((len(readable), *model_input.SHAPE), np.float32)
        if found_rows:
            batch[found_rows] = model_input.to_model_input(np.stack([results[readable[row]].pixels
                                                                     for row in found_rows]))
        if tensor_rows:
            batch[tensor_rows] = np.stack([results[readable[row]] for row in tensor_rows])
        for n, probabilities in zip(readable, self.predict_inputs(batch)):
            found = results[n] if isinstance(results[n], normalise.Found) else None
            results[n] = Classified(probabilities, found)
        return results


def stacked(results: list[np.ndarray | Exception], refused: Callable[[int, UploadError], ServiceError]) -> np.ndarray:
    """The probabilities of a request's items, (N, 10), for the routes that answer a request whole
    (TF Serving's predict, the Open Inference Protocol's infer): an item whose image cannot be read
    refuses the request with ``refused(its index, its error)``, and any other error is raised as it is."""
    for index, result in enumerate(results):
        if isinstance(result, UploadError):
            raise refused(index, result)
        if isinstance(result, Exception):
            raise result
    return np.stack(results)
