"""The inference engines: a trained model as a function from model input (float32, (N, 28, 28, 1))
to class probabilities (N, 10), as the INFERENCE_ENGINE setting chooses.

``litert-int8`` (the default) and ``litert-float32`` run the LiteRT flatbuffer that training wrote
beside the model (artifacts) with the LiteRT interpreter and its XNNPACK CPU kernels: nothing is
converted at load time, and serving with them imports neither TensorFlow nor Keras.
``litert-int8``'s flatbuffer stores the weights as 8-bit integers (the converter's dynamic-range
quantisation: no calibration data needed); the accuracy the metadata records is this one's. An
image's answer does not depend on what it is batched with (bit-identical alone and batched; a
test checks it). ``tensorflow`` loads the Keras model and runs a ``tf.function`` with a fixed
input signature (traced once, during warm-up), on a GPU when TensorFlow sees one (the GPU image
uses it); its probabilities and ``litert-float32``'s agree to 1e-6 (a test holds them to it).
TensorFlow is imported only when that engine loads a model, inside each worker after gunicorn has
forked it: TensorFlow is not fork-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_service import artifacts, model_input
from mnist_service.settings import Settings


@dataclass(frozen=True)
class Engine:
    """A model ready to run: its inference function, the engine's name and the devices it runs on."""

    name: str
    infer: Callable[[np.ndarray], np.ndarray]
    devices: list[str]


def load_engine(model_path: Path, settings: Settings) -> Engine:
    """Load a saved model (checked against its metadata: artifacts.read_metadata) for the engine
    ``settings.engine`` and warm it up."""
    if settings.engine.startswith("litert"):
        precision = settings.engine.removeprefix("litert-")
        flatbuffer = artifacts.litert_path(model_path, precision).read_bytes()
        infer = litert_function(flatbuffer, settings.litert_slice_size, settings.inference_threads)
        devices = [f"LiteRT XNNPACK (CPU), {precision} weights"]
    else:
        import keras
        import tensorflow as tf

        model = keras.saving.load_model(model_path, compile=False)
        function = tf.function(lambda batch: model(batch, training=False),
                               input_signature=[tf.TensorSpec((None, *model_input.SHAPE), tf.float32)])

        def infer(batch: np.ndarray) -> np.ndarray:
            return function(batch).numpy()

        devices = [device.name for device in tf.config.list_logical_devices()]
    infer(np.zeros((1, *model_input.SHAPE), np.float32))  # trace and warm up
    return Engine(settings.engine, infer, devices)


def litert_function(flatbuffer: bytes, slice_size: int, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """A LiteRT flatbuffer as a function run by the LiteRT interpreter on ``threads`` threads. One
    interpreter, resized when the batch size changes, runs a batch in slices of at most
    ``slice_size`` images; a lock keeps it to one call at a time.

    Why slices: XNNPACK runs a batch one layer at a time, and a layer's activations for a whole
    batch (the CNN's widest, 14x14x48 floats, are 38 KB an image) outgrow a core's L2 cache at a
    few dozen images, where a slice of 16 stays near it."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer, num_threads=threads)
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
            if len(batch) <= slice_size:
                return invoke(batch)
            return np.concatenate([invoke(batch[start : start + slice_size])
                                   for start in range(0, len(batch), slice_size)])

    return infer
