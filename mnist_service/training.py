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
test accuracy of what is served, epochs, date, checksums, input definition and library versions,
and a training report (see report) is written beside them. Training is seeded and runs with
TensorFlow's op determinism, so the same seed, data and versions give the same model on the same
machine.
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

from mnist_service import artifacts, mnist_data, model_input, normalise, report
from mnist_service.engines import litert_function
from mnist_service.settings import Settings


def build_cnn():
    """The CNN: a 5x5 convolution of stride 2 (28x28 -> 14x14), a 3x3 convolution, a 3x3 one of
    stride 2 (-> 7x7) and another 3x3, each with batch normalisation; dropout, and a dense head with
    dropout (~0.67M parameters). Nothing is computed at the full 28x28: on a CPU, a 28x28 layer's
    activations cost more in memory traffic than its arithmetic, and a strided convolution keeps
    the detail that pooling throws away."""
    import keras
    from keras import layers

    def conv(filters, size=3, strides=1):
        return [layers.Conv2D(filters, size, strides=strides, padding="same", use_bias=False),
                layers.BatchNormalization(momentum=0.9), layers.Activation("relu")]

    return keras.Sequential(
        [
            keras.Input(shape=model_input.SHAPE, name="pixels"),
            # Narrow where the activations are large: with 48 filters at 14x14 and 64 at the stride, an epoch
            # costs about 1.4x the CPU time, and on held-out images epochs are worth more here than width.
            *conv(32, 5, strides=2), *conv(32), *conv(48, strides=2), layers.Dropout(0.1), *conv(96),
            layers.Flatten(),
            layers.Dense(128, use_bias=False), layers.BatchNormalization(momentum=0.9), layers.Activation("relu"),
            # Light dropout: with the augmentation, the CNN stays short of fitting its training batches.
            layers.Dropout(0.25),
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
    learning_rate: float  # the one-cycle schedule's peak (Adam)

    @property
    def default_out(self) -> Path:
        return artifacts.DEFAULT_MODEL_DIR / f"{self.name}{artifacts.MODEL_SUFFIX}"


# The defaults for make, the Docker images and the CLI.
KINDS = {
    "cnn": Kind("mnist-cnn", build_cnn, epochs=16, learning_rate=3e-3),
    "dense": Kind("mnist-dense", build_dense, epochs=20, learning_rate=2e-3),
}
WARMUP_SHARE = 0.15  # of the steps: the one-cycle schedule's linear warm-up


def test_monitor(model, x_test: np.ndarray, y_test: np.ndarray):
    """A Keras callback that adds, after each epoch, the model's loss and accuracy on the test split
    and the learning rate to the training history, for the report's learning curves. Only
    recorded: no epoch, seed or setting is chosen by them."""
    import keras

    class TestMonitor(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            probabilities = model.predict(x_test, batch_size=1000, verbose=0)
            picked = np.clip(probabilities[np.arange(len(y_test)), y_test], 1e-7, 1.0)
            logs["test_loss"] = float(-np.log(picked).mean())
            logs["test_accuracy"] = float(np.mean(probabilities.argmax(axis=1) == y_test))
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    return TestMonitor()


def train(
    data: mnist_data.Mnist,
    out: Path,
    epochs: int,
    kind: Kind = KINDS["cnn"],
    batch_size: int = 128,
    limit: int | None = None,
    seed: int = 1234,
    holdout: int = 0,
    verbose: int | str = "auto",
) -> dict:
    """Train ``kind`` on ``data`` (the first ``limit`` training images if given, less the last
    ``holdout``, which are kept out of training and evaluated as the test split is); save the model,
    its flatbuffers, its report and its metadata; return the metadata."""
    import keras
    import tensorflow as tf

    from mnist_service import augmentation

    keras.utils.set_random_seed(seed)
    # The same seed, data and versions give the same model on the same machine.
    tf.config.experimental.enable_op_determinism()
    # The images go through the uploads' normalisation, so training sees what serving makes.
    kept = len(data.x_train) - holdout
    x_train = model_input.to_model_input(normalise.normalise_stack(data.x_train[:kept][:limit]))
    y_train = data.y_train[:kept][:limit]
    test_pixels = normalise.normalise_stack(data.x_test)
    x_test = model_input.to_model_input(test_pixels)
    x_holdout = model_input.to_model_input(normalise.normalise_stack(data.x_train[kept:])) if holdout else None
    batches = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=seed)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )

    model = kind.build()
    trainer = augmentation.trainer(model, seed)
    steps = epochs * int(np.ceil(len(x_train) / batch_size))
    # One cycle: a short linear warm-up to the peak rate, then a cosine decay to nothing.
    warmup = int(WARMUP_SHARE * steps)
    schedule = keras.optimizers.schedules.CosineDecay(
        kind.learning_rate / 10, decay_steps=steps - warmup, alpha=0.0,
        warmup_target=kind.learning_rate, warmup_steps=warmup,
    )
    trainer.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    started = time.perf_counter()
    history = trainer.fit(batches, epochs=epochs, verbose=verbose, shuffle=False,  # the dataset shuffles
                          callbacks=[test_monitor(model, x_test, data.y_test)]).history
    seconds = time.perf_counter() - started
    keras_accuracy = history["test_accuracy"][-1]

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    litert, served, held_out = {}, None, {}
    for precision, flatbuffer in litert_flatbuffers(model).items():
        artifacts.litert_path(out, precision).write_bytes(flatbuffer)
        probabilities = litert_probabilities(flatbuffer, x_test)
        litert[precision] = {"test_accuracy": accuracy(probabilities, data.y_test)}
        if precision == "int8":
            served = probabilities
            if holdout:
                held_out = {"holdout_accuracy": accuracy(litert_probabilities(flatbuffer, x_holdout),
                                                         data.y_train[kept:]),
                            "holdout_examples": holdout}
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
        **held_out,
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "training_seconds": round(seconds, 1),
        "seconds_per_epoch": round(seconds / epochs, 1),
        "parameters": int(model.count_params()),
        "litert": litert,
        "report": artifacts.report_path(out).name,
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
    report.write_report(artifacts.report_path(out), metadata, history, test_pixels, data.y_test, served)
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


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The share of ``labels`` that ``probabilities`` (N, 10) rank first, as the metadata records it."""
    return round(float(np.mean(probabilities.argmax(axis=1) == labels)), 6)


def litert_probabilities(flatbuffer: bytes, x_test: np.ndarray) -> np.ndarray:
    """A flatbuffer's probabilities on ``x_test``, run as the server runs it
    (engines.litert_function, the default slices and threads)."""
    defaults = Settings()
    return litert_function(flatbuffer, defaults.litert_slice_size, defaults.inference_threads)(x_test)


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
    parser.add_argument("--holdout", type=int, default=0, metavar="N",
                        help="keep the last N training images out of training and report the accuracy on "
                        "them, to compare recipes without looking at the test split")
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
    if not 0 <= args.holdout < len(data.x_train):
        print(f"error: --holdout must be from 0 to {len(data.x_train) - 1}", file=sys.stderr)
        return 2
    metadata = train(
        data, out, epochs=args.epochs or kind.epochs, kind=kind, batch_size=args.batch_size,
        limit=args.limit, seed=args.seed, holdout=args.holdout, verbose=1 if sys.stdout.isatty() else 2,
    )
    print(
        f"{kind.name}: test accuracy {metadata['test_accuracy']:.4f} as served (LiteRT, int8 weights; Keras "
        f"{metadata['keras_test_accuracy']:.4f}) after {metadata['epochs']} epochs "
        f"({metadata['seconds_per_epoch']} s/epoch); saved {out}, its LiteRT flatbuffers and "
        f"{artifacts.metadata_path(out).name}"
    )
    if args.holdout:
        print(f"{kind.name}: accuracy {metadata['holdout_accuracy']:.4f} as served on the {args.holdout} training "
              "images held out")
    print(f"{kind.name}: training report (learning curves, confusion matrix, misclassified digits) in "
          f"{artifacts.report_path(out)}, served at /models/{kind.name}/report")
    print(f"model sha256 {kind.name}: {metadata['model_sha256']}")
    print(f"served sha256 {kind.name}: {metadata['litert']['int8']['sha256']}")
    if metadata["test_accuracy"] < args.min_accuracy:
        print(f"error: test accuracy below the required {args.min_accuracy}", file=sys.stderr)
        return 1
    return 0

