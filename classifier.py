"""Model loading and inference: every model of the model folder in each worker process, loaded
and warmed in the background.

TensorFlow is not fork-safe, so nothing here runs at import time: the server's lifespan creates a
:class:`ModelShelf` inside each worker after gunicorn has forked it, with one :class:`ModelSlot`
per ``*.keras`` file of the folder. Each slot reads its model's metadata at once (a missing or
mismatched model stops the worker with a clear error) and loads TensorFlow and the model in a
background thread, so the worker answers ``/health/ready`` with 503 until every model is loaded.
The HTTP handlers reach a model through its classifier's micro-batcher (see batching), which
runs :meth:`Classifier.classify_uploads` in its thread: decode each upload, normalise the readable
ones together (preprocess.uploads_to_pixels), then one model call for all of them, never
``model.predict``, whose per-call overhead dwarfs this model's compute.

Three inference engines (``INFERENCE_ENGINE``). ``litert-int8`` (the default) and
``litert-float32`` convert the Keras model at load time with TensorFlow's LiteRT converter and run
it with the LiteRT interpreter and its XNNPACK CPU kernels. ``litert-int8`` stores the weights as
8-bit integers (the converter's dynamic-range quantisation: no calibration data needed) and runs
the CNN in about 0.09 ms per image where float32 takes 0.4 ms and TensorFlow's runtime 1.3 ms, most
of that the call's own overhead; on the full MNIST test split the served CNN's answers agree with
float32's on all but about 2 of 10,000 images, and its accuracy is checked against the Keras
model's (tests/test_accuracy.py). An image's answer does not depend on what it is batched with
(bit-identical alone and batched; a test checks it). ``tensorflow`` runs a ``tf.function`` with
a fixed input signature (traced once, during warm-up), on a GPU when TensorFlow sees one (the GPU
image uses it); its probabilities and ``litert-float32``'s differ by about 1e-10, a test holds
them to 1e-6.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

import metrics
import model_input
import preprocess
from batching import MicroBatcher
from train_mnist import file_sha256, metadata_path

log = logging.getLogger(__name__)

# An answer whose top probability is below this is flagged "uncertain": ask the user to redraw.
UNCERTAIN_BELOW = float(os.environ.get("UNCERTAIN_BELOW", "0.8"))
# The model that answers when a request names none.
DEFAULT_MODEL = os.environ.get("DEFAULT_MODEL", "mnist-cnn")
# How models are run: "litert-int8" (CPU, int8 weights, fastest), "litert-float32" (CPU) or
# "tensorflow" (CPU or GPU); see above.
ENGINES = ("litert-int8", "litert-float32", "tensorflow")
ENGINE = os.environ.get("INFERENCE_ENGINE", "litert-int8")
# The most images the LiteRT interpreter runs in one invocation: a larger batch runs in slices of
# this many. XNNPACK runs a batch one layer at a time, and a layer's activations (about 100 KB an
# image at the widest layers) are 1.6 MB for 16 images, near a core's 1 MB L2 cache here, against
# 6.4 MB for 64. Cache misses were not counted, but CPU time was: decoding, normalising and
# running 64 PNGs took about 5% less in slices of 8 or 16 than whole, and the batch route served
# 7-14% more (README, Speed).
LITERT_SLICE = int(os.environ.get("LITERT_SLICE_SIZE", "16"))


def read_metadata(model_path: Path) -> dict:
    """The metadata saved beside a model, checked against the model file and this code's input
    definition."""
    if not Path(model_path).is_file():
        raise FileNotFoundError(f"no model at {model_path}: train one with `make model` or set MODEL_DIR")
    metadata = json.loads(metadata_path(model_path).read_text())
    if "model_sha256" not in metadata:
        raise ValueError(f"{metadata_path(model_path)} has no model_sha256: retrain the model (make retrain)")
    if file_sha256(model_path) != metadata["model_sha256"]:
        raise ValueError(f"{model_path} is not the model {metadata_path(model_path).name} describes (sha256 differs)")
    model_input.check_spec(metadata["input"])
    return metadata


@dataclass
class Classifier:
    """A loaded model, its metadata, the devices it runs on, and its compiled inference function."""

    metadata: dict
    devices: list[str]
    infer: Callable[[np.ndarray], Any]
    engine: str = "tensorflow"
    batcher: MicroBatcher = field(init=False, repr=False)  # batches the event loop's requests

    def __post_init__(self):
        self.batcher = MicroBatcher(self.classify_uploads)

    @classmethod
    def load(cls, model_path: str | os.PathLike, metadata: dict | None = None, engine: str | None = None
             ) -> "Classifier":
        """Load a saved model and its metadata, check its input definition, prepare it for the
        engine (default ``INFERENCE_ENGINE``) and warm it up."""
        engine = engine or ENGINE
        if engine not in ENGINES:
            raise ValueError(f'INFERENCE_ENGINE is "{engine}"; it is one of {", ".join(ENGINES)}')
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras
        import tensorflow as tf

        model_path = Path(model_path)
        metadata = metadata or read_metadata(model_path)
        model = keras.saving.load_model(model_path, compile=False)
        if engine.startswith("litert"):
            int8 = engine == "litert-int8"
            infer = litert_function(model, int8_weights=int8)
            devices = [f"LiteRT XNNPACK (CPU), {'int8' if int8 else 'float32'} weights"]
        else:
            infer = tf.function(lambda batch: model(batch, training=False),
                                input_signature=[tf.TensorSpec((None, *model_input.SHAPE), tf.float32)])
            devices = [device.name for device in tf.config.list_logical_devices()]
        classifier = cls(metadata=metadata, devices=devices, infer=infer, engine=engine)
        infer(np.zeros((1, *model_input.SHAPE), np.float32))  # trace and warm up
        return classifier

    def predict_inputs(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (N, 10), for model input (see model_input.check_model_input)."""
        probabilities = np.asarray(self.infer(model_input.check_model_input(batch)))
        metrics.observe_inference(self.metadata["name"], probabilities)
        return probabilities

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (N, 10), for uint8 pixels of shape (N, 28, 28)."""
        return self.predict_inputs(model_input.to_model_input(pixels))

    def classify_uploads(self, uploads: list[bytes]) -> list[np.ndarray | Exception]:
        """For each uploaded file's bytes, its class probabilities (10,), or the error that says
        why it has none (a preprocess.UploadError, or whatever else decoding raised, which then
        fails only its own upload); the readable uploads go through the model in one call."""
        decoded = preprocess.uploads_to_pixels(uploads)
        readable = [pixels for pixels in decoded if isinstance(pixels, np.ndarray)]
        probabilities = iter(self.predict(np.stack(readable)) if readable else ())
        return [item if isinstance(item, Exception) else next(probabilities) for item in decoded]

    def answers(self, probabilities: np.ndarray) -> list[dict]:
        """The JSON answer for each image's probabilities, shape (N, 10): digit, confidence, all
        ten, model (one NumPy call for all of them)."""
        digits = probabilities.argmax(axis=1).tolist()
        name, version = self.metadata["name"], self.metadata["version"]
        return [
            {"digit": digit, "confidence": row[digit], "uncertain": row[digit] < UNCERTAIN_BELOW,
             "probabilities": row, "model": name, "model_version": version}
            for digit, row in zip(digits, probabilities.tolist())
        ]

    def answer(self, probabilities: np.ndarray) -> dict:
        """The JSON answer for one image's probabilities, shape (10,)."""
        return self.answers(probabilities[np.newaxis])[0]


def litert_function(model, int8_weights: bool = True) -> Callable[[np.ndarray], np.ndarray]:
    """A Keras model as a function run by the LiteRT interpreter: converted through a SavedModel
    export (Keras' own) and TensorFlow's LiteRT converter, the weights quantised to int8 (dynamic
    range: activations stay float32 between layers) or kept in float32. One interpreter, resized
    when the batch size changes, runs a batch in slices of at most LITERT_SLICE images; a lock
    keeps it to one call at a time."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    if LITERT_SLICE < 1:
        raise ValueError(f"LITERT_SLICE_SIZE is {LITERT_SLICE}; it is at least 1")
    with tempfile.TemporaryDirectory(prefix="mnist-export-") as folder:
        model.export(folder, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        if int8_weights:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no representative data: dynamic range
        flatbuffer = converter.convert()
    interpreter = Interpreter(model_content=flatbuffer,
                              num_threads=int(os.environ.get("TF_NUM_INTRAOP_THREADS") or 1))
    (given,), (answer,) = interpreter.get_input_details(), interpreter.get_output_details()
    lock = threading.Lock()
    allocated = [None]  # the input shape the interpreter is allocated for

    def invoke(batch: np.ndarray) -> np.ndarray:
        if allocated[0] != batch.shape:
            interpreter.resize_tensor_input(given["index"], batch.shape)
            interpreter.allocate_tensors()
            allocated[0] = batch.shape
        interpreter.set_tensor(given["index"], batch)
        interpreter.invoke()
        return interpreter.get_tensor(answer["index"]).copy()

    def infer(batch: np.ndarray) -> np.ndarray:
        with lock:
            if len(batch) <= LITERT_SLICE:
                return invoke(batch)
            return np.concatenate([invoke(batch[start : start + LITERT_SLICE])
                                   for start in range(0, len(batch), LITERT_SLICE)])

    return infer


class ModelNotReady(RuntimeError):
    """The model is still loading, or failed to load; the message says which."""


class ModelSlot:
    """One worker's model: metadata at once, the model itself loaded in a background thread."""

    def __init__(self, model_path: str | os.PathLike):
        self.path = Path(model_path)
        self.metadata = read_metadata(self.path)
        self.classifier: Classifier | None = None
        self.error: str | None = None
        self._done = threading.Event()

    def start_loading(self) -> "ModelSlot":
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()
        return self

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            self.classifier = Classifier.load(self.path, self.metadata)
        except Exception as error:  # reported by /health/ready and in the log
            self.error = f"loading {self.path} failed: {type(error).__name__}: {error}"
            log.exception("model load failed")
        else:
            # TensorFlow and the models leave about 280,000 long-lived objects, which every full
            # collection of the garbage collector walked: pauses of 80-180 ms under load, each one
            # a latency spike for every request in flight. Frozen, they are skipped.
            gc.freeze()
            seconds = time.perf_counter() - started
            metrics.MODEL_LOAD_SECONDS.set(seconds)
            log.info(
                "loaded %s version %s from %s in %.2f s (TensorFlow sees: %s)",
                self.metadata["name"], self.metadata["version"], self.path, seconds,
                ", ".join(self.classifier.devices),
            )
        finally:
            self._done.set()

    @property
    def state(self) -> str:
        """'loading', 'ready' or 'failed'."""
        if not self._done.is_set():
            return "loading"
        return "ready" if self.classifier else "failed"

    def reason(self) -> str:
        """Why the model is not ready (empty when it is)."""
        return {
            "loading": f"model {self.metadata['name']} is still loading",
            "failed": self.error or "",
            "ready": "",
        }[self.state]

    def get(self, timeout: float) -> Classifier:
        """The classifier, waiting up to ``timeout`` seconds for it to load."""
        self._done.wait(timeout)
        if self.classifier is None:
            raise ModelNotReady(self.reason())
        return self.classifier


class ModelShelf:
    """Every model of a folder (each ``*.keras`` file with its metadata), by name; one of them,
    ``default``, answers requests that name no model."""

    def __init__(self, model_dir: str | os.PathLike, default: str = DEFAULT_MODEL):
        self.folder = Path(model_dir)
        paths = sorted(self.folder.glob("*.keras"))
        if not paths:
            raise FileNotFoundError(f"no model in {self.folder}: train one with `make model` or set MODEL_DIR")
        self.slots: dict[str, ModelSlot] = {}
        for path in paths:
            slot = ModelSlot(path)
            name = slot.metadata["name"]
            if name in self.slots:
                raise ValueError(f'{path} and {self.slots[name].path} are both named "{name}"')
            self.slots[name] = slot
        if default not in self.slots:
            raise ValueError(f'the default model "{default}" (DEFAULT_MODEL) is not in {self.folder}; '
                             f"it holds {', '.join(self.slots)}")
        self.default = default

    def start_loading(self) -> "ModelShelf":
        for slot in self.slots.values():
            slot.start_loading()
        return self

    def slot(self, name: str | None = None) -> ModelSlot:
        """The slot of the model called ``name`` (the default model for None); KeyError if none."""
        return self.slots[name or self.default]

    @property
    def state(self) -> str:
        """'ready' once every model is, 'failed' if any failed, else 'loading'."""
        states = {slot.state for slot in self.slots.values()}
        return "failed" if "failed" in states else "loading" if "loading" in states else "ready"

    def reason(self) -> str:
        """Why the shelf is not ready (empty when it is)."""
        return "; ".join(slot.reason() for slot in self.slots.values() if slot.reason())
