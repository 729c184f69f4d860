"""Training: the model recipes, and training a model and saving it, with its LiteRT flatbuffers and
its metadata, where the server loads it from. ``train_mnist.py`` is its command line:

    python train_mnist.py [--model cnn|dense] [--data DIR] [--epochs N] [--out PATH]

Two models: ``cnn`` (the default, ``mnist-cnn``) and ``dense`` (``mnist-dense``, the book's
classical fully connected network). Each is saved as ``var/data/<name>.keras``; the server serves
every model in that folder.

Data comes from ``--data`` / ``$MNIST_DATA`` (a folder of the four MNIST IDX ``.gz`` files), else
``var/data/mnist/`` when present, else Keras' download (see ``mnist_data``). The model is saved in
Keras' native format (``.keras``) and converted here, once, into the LiteRT flatbuffers the server
runs, so serving needs no TensorFlow; a JSON metadata file beside them (see artifacts) records the
test accuracy of what is served, epochs, date, checksums, input definition and library versions.
Training is seeded, but tf.data augments in parallel threads, so runs differ a little.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mnist_service import artifacts, mnist_data, model_input, normalise
from mnist_service.engines import litert_function
from mnist_service.settings import Settings


def build_cnn():
    """The CNN: two stages of two 3x3 convolutions with batch normalisation, each stage max-pooled
    and followed by dropout, and a dense head with dropout (~0.5M parameters)."""
    import keras
    from keras import layers

    def conv(filters):
        return [layers.Conv2D(filters, 3, padding="same", use_bias=False),
                layers.BatchNormalization(momentum=0.9), layers.Activation("relu")]

    return keras.Sequential(
        [
            keras.Input(shape=model_input.SHAPE, name="pixels"),
            *conv(32), *conv(32), layers.MaxPooling2D(), layers.Dropout(0.1),
            *conv(64), *conv(64), layers.MaxPooling2D(), layers.Dropout(0.2),
            layers.Flatten(),
            layers.Dense(128, use_bias=False), layers.BatchNormalization(momentum=0.9), layers.Activation("relu"),
            layers.Dropout(0.4),
            layers.Dense(10, activation="softmax", name="probabilities"),
        ],
        name="mnist_cnn",
    )


def build_dense():
    """The book's classical dense network: the image flattened, one hidden layer of 512 ReLU
    units, dropout, and a softmax over the ten digits (~0.4M parameters)."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(shape=model_input.SHAPE, name="pixels"),
            layers.Flatten(),
            layers.Dense(512, activation="relu"),
            layers.Dropout(0.2),
            layers.Dense(10, activation="softmax", name="probabilities"),
        ],
        name="mnist_dense",
    )


@dataclass(frozen=True)
class Kind:
    """A model this script trains: its served name, how to build it, and its default epochs."""

    name: str
    build: Callable
    epochs: int

    @property
    def default_out(self) -> Path:
        return artifacts.DEFAULT_MODEL_DIR / f"{self.name}{artifacts.MODEL_SUFFIX}"


# The defaults for make, the Docker images and the CLI.
KINDS = {
    "cnn": Kind("mnist-cnn", build_cnn, epochs=15),
    "dense": Kind("mnist-dense", build_dense, epochs=20),
}


def augmentation(seed: int):
    """Random changes that real uploads show after normalisation, for training batches only:
    small rotations, scale changes and shifts, and thinner or thicker strokes."""
    import keras
    import tensorflow as tf
    from keras import layers

    geometry = keras.Sequential([
        layers.RandomRotation(0.025, fill_mode="constant", seed=seed),  # +-9 degrees
        layers.RandomZoom(0.1, fill_mode="constant", seed=seed + 1),
        layers.RandomTranslation(0.06, 0.06, fill_mode="constant", seed=seed + 2),  # +-1.7 px
    ])

    def augment(images, labels):
        images = geometry(images, training=True)
        # Stroke thickness: move each image part of the way towards its dilation or its erosion.
        thicker = tf.nn.max_pool2d(images, 3, 1, "SAME")
        thinner = -tf.nn.max_pool2d(-images, 3, 1, "SAME")
        amount = tf.random.uniform((tf.shape(images)[0], 1, 1, 1), -0.5, 0.5, seed=seed + 3)
        target = tf.where(amount > 0, thicker, thinner)
        return images + tf.abs(amount) * (target - images), labels

    return augment


def train(
    data: mnist_data.Mnist,
    out: Path,
    epochs: int,
    kind: Kind = KINDS["cnn"],
    batch_size: int = 128,
    limit: int | None = None,
    seed: int = 1234,
    verbose: int | str = "auto",
) -> dict:
    """Train ``kind`` on ``data`` (the first ``limit`` training images if given), save, return
    metadata."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    # The images go through the uploads' normalisation, so training sees what serving makes.
    x_train = model_input.to_model_input(normalise.normalise_stack(data.x_train[:limit]))
    y_train = data.y_train[:limit]
    x_test = model_input.to_model_input(normalise.normalise_stack(data.x_test))
    batches = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=seed)
        .batch(batch_size)
        .map(augmentation(seed), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )

    model = kind.build()
    steps = epochs * int(np.ceil(len(x_train) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=steps, alpha=0.02)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    started = time.perf_counter()
    model.fit(batches, epochs=epochs, verbose=verbose, shuffle=False)  # the dataset shuffles
    seconds = time.perf_counter() - started
    _, keras_accuracy = model.evaluate(x_test, data.y_test, batch_size=1000, verbose=0)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    litert = {}
    for precision, flatbuffer in litert_flatbuffers(model).items():
        artifacts.litert_path(out, precision).write_bytes(flatbuffer)
        litert[precision] = {"test_accuracy": litert_accuracy(flatbuffer, x_test, data.y_test)}
    trained_at = datetime.now(UTC)
    metadata = {
        "name": kind.name,
        "version": trained_at.strftime("%Y%m%dT%H%M%SZ"),
        "trained_at": trained_at.isoformat(timespec="seconds"),
        "input": model_input.SPEC,
        "classes": list(range(10)),
        # The accuracy of what is served: the default engine's flatbuffer, int8 weights.
        "test_accuracy": litert["int8"]["test_accuracy"],
        "keras_test_accuracy": round(float(keras_accuracy), 6),
        "test_examples": int(len(x_test)),
        "train_examples": int(len(x_train)),
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "training_seconds": round(seconds, 1),
        "seconds_per_epoch": round(seconds / epochs, 1),
        "parameters": int(model.count_params()),
        "litert": litert,
        "data_source": data.source,
        "data_sha256": data.content_sha256(),
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
            "ai_edge_litert": importlib.metadata.version("ai-edge-litert"),
        },
    }
    return artifacts.save_metadata(out, metadata)


def litert_flatbuffers(model) -> dict[str, bytes]:
    """A Keras model converted for the LiteRT interpreter, through a SavedModel export (Keras' own)
    and TensorFlow's LiteRT converter, by weight precision (artifacts.LITERT_PRECISIONS): int8 (the
    converter's dynamic-range quantisation: no calibration data needed, activations stay float32
    between layers) and float32, the weights as trained."""
    import tensorflow as tf

    flatbuffers = {}
    with tempfile.TemporaryDirectory(prefix="mnist-export-") as folder:
        model.export(folder, format="tf_saved_model", verbose=False)
        for precision in artifacts.LITERT_PRECISIONS:
            converter = tf.lite.TFLiteConverter.from_saved_model(folder)
            if precision == "int8":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            flatbuffers[precision] = converter.convert()
    return flatbuffers


def litert_accuracy(flatbuffer: bytes, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """The test accuracy of a flatbuffer run as the server runs it (engines.litert_function, the
    default slices and threads)."""
    defaults = Settings()
    infer = litert_function(flatbuffer, defaults.litert_slice_size, defaults.inference_threads)
    return round(float(np.mean(infer(x_test).argmax(axis=1) == y_test)), 6)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="train_mnist.py", description="Train a digit classifier and save it, "
                                     "with its metadata, where the server loads it from.")
    parser.add_argument("--model", choices=sorted(KINDS), default="cnn",
                        help="which model to train (default cnn)")
    parser.add_argument("--data", help="folder of the MNIST IDX .gz files (default: $MNIST_DATA, "
                        "else var/data/mnist/ if present, else download)")
    parser.add_argument("--epochs", type=int, help="training epochs (default: cnn "
                        f"{KINDS['cnn'].epochs}, dense {KINDS['dense'].epochs})")
    parser.add_argument("--out", type=Path, help="model file to write (default var/data/<name>.keras: "
                        "mnist-cnn.keras or mnist-dense.keras)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--limit", type=int, help="train on the first N training images only (quick runs, tests)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--min-accuracy", type=float, default=0.0,
                        help="exit with status 1 if the test accuracy is below this (0-1)")
    args = parser.parse_args(argv)
    kind = KINDS[args.model]
    out = args.out or kind.default_out

    try:
        data = mnist_data.load_mnist(args.data)
    except mnist_data.IdxError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"MNIST from {data.source}: {len(data.x_train)} training, {len(data.x_test)} test images")
    metadata = train(
        data, out, epochs=args.epochs or kind.epochs, kind=kind, batch_size=args.batch_size,
        limit=args.limit, seed=args.seed, verbose=1 if sys.stdout.isatty() else 2,
    )
    print(
        f"{kind.name}: test accuracy {metadata['test_accuracy']:.4f} as served (LiteRT, int8 weights; Keras "
        f"{metadata['keras_test_accuracy']:.4f}) after {metadata['epochs']} epochs "
        f"({metadata['seconds_per_epoch']} s/epoch); saved {out}, its LiteRT flatbuffers and "
        f"{artifacts.metadata_path(out).name}"
    )
    print(f"model sha256 {kind.name}: {metadata['model_sha256']}")
    print(f"served sha256 {kind.name}: {metadata['litert']['int8']['sha256']}")
    if metadata["test_accuracy"] < args.min_accuracy:
        print(f"error: test accuracy below the required {args.min_accuracy}", file=sys.stderr)
        return 1
    return 0

