"""The inference engines: a saved Keras model turned into a function from model input (float32,
(N, 28, 28, 1)) to class probabilities (N, 10), as the INFERENCE_ENGINE setting chooses.

``litert-int8`` (the default) and ``litert-float32`` convert the Keras model at load time with
TensorFlow's LiteRT converter and run it with the LiteRT interpreter and its XNNPACK CPU kernels.
``litert-int8`` stores the weights as 8-bit integers (the converter's dynamic-range quantisation:
no calibration data needed); its answers agree with float32's on all but a few of the 10,000 MNIST
test images, and its accuracy is checked against the Keras model's (tests/accuracy). An image's
answer does not depend on what it is batched with (bit-identical alone and batched; a test checks
it). ``tensorflow`` runs a ``tf.function`` with a fixed input signature (traced once, during
warm-up), on a GPU when TensorFlow sees one (the GPU image uses it); its probabilities and
``litert-float32``'s agree to 1e-6 (a test holds them to it).

TensorFlow is imported only when a model is loaded, inside each worker after gunicorn has forked
it: TensorFlow is not fork-safe.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_service import model_input
from mnist_service.settings import Settings


@dataclass(frozen=True)
class Engine:
    """A model ready to run: its inference function, the engine's name and the devices it runs on."""

    name: str
    infer: Callable[[np.ndarray], np.ndarray]
    devices: list[str]


def load_engine(model_path: Path, settings: Settings) -> Engine:
    """Load a saved Keras model for the engine ``settings.engine`` and warm it up."""
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(model_path, compile=False)
    if settings.engine.startswith("litert"):
        int8 = settings.engine == "litert-int8"
        infer = litert_function(model, int8, settings.litert_slice_size, settings.inference_threads)
        devices = [f"LiteRT XNNPACK (CPU), {'int8' if int8 else 'float32'} weights"]
    else:
        function = tf.function(lambda batch: model(batch, training=False),
                               input_signature=[tf.TensorSpec((None, *model_input.SHAPE), tf.float32)])

        def infer(batch: np.ndarray) -> np.ndarray:
            return function(batch).numpy()

        devices = [device.name for device in tf.config.list_logical_devices()]
    infer(np.zeros((1, *model_input.SHAPE), np.float32))  # trace and warm up
    return Engine(settings.engine, infer, devices)


def litert_function(model, int8_weights: bool, slice_size: int, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """A Keras model as a function run by the LiteRT interpreter: converted through a SavedModel
    export (Keras' own) and TensorFlow's LiteRT converter, the weights quantised to int8 (dynamic
    range: activations stay float32 between layers) or kept in float32. One interpreter, resized
    when the batch size changes, runs a batch in slices of at most ``slice_size`` images; a lock
    keeps it to one call at a time.

    Why slices: XNNPACK runs a batch one layer at a time, and the widest layers' activations are
    about 100 KB an image, so a slice of 16 keeps a layer's output near a core's L2 cache where a
    batch of 64 is four times that."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    with tempfile.TemporaryDirectory(prefix="mnist-export-") as folder:
        model.export(folder, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        if int8_weights:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no representative data: dynamic range
        flatbuffer = converter.convert()
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
