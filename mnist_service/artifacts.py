"""A trained model on disk: the Keras model file, the LiteRT flatbuffers converted from it, its
metadata beside them, and the checksums that tie them together. Training writes them
(:func:`save_metadata`); serving reads and checks them (:func:`read_metadata`), so neither imports
the other.

A model ``var/data/mnist-cnn.keras`` has its flatbuffers in ``mnist-cnn.int8.tflite`` (int8
weights, the default engine's) and ``mnist-cnn.float32.tflite``, its training report in
``mnist-cnn.report.html``, and its metadata in ``mnist-cnn.json``: its name, version, the test
accuracy of what is served, input definition, data checksum, library versions, and the sha256 of
each file, so a file swapped without its metadata (or the reverse) is refused by name when the
server starts.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mnist_service import model_input

# Where `make model` saves the models and the server serves them from by default.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "var" / "data"
MODEL_SUFFIX = ".keras"
# The LiteRT flatbuffers written beside each model: its weights as 8-bit integers, or as trained.
LITERT_PRECISIONS = ("int8", "float32")


def metadata_path(model_path: Path) -> Path:
    """Where the metadata of a saved model lives: beside it, same name, ``.json``."""
    return Path(model_path).with_suffix(".json")


def litert_path(model_path: Path, precision: str) -> Path:
    """Where the LiteRT flatbuffer of a saved model with weights of ``precision`` lives."""
    return Path(model_path).with_suffix(f".{precision}.tflite")


def report_path(model_path: Path) -> Path:
    """Where the training report of a saved model lives (mnist_service.report): beside it, ``.report.html``."""
    return Path(model_path).with_suffix(".report.html")


def file_sha256(path: Path) -> str:
    """SHA-256 of a file: the metadata records the model file's, so each names the other."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def model_files(folder: Path) -> list[Path]:
    """The model files of a folder, sorted; FileNotFoundError if it has none."""
    paths = sorted(Path(folder).glob(f"*{MODEL_SUFFIX}"))
    if not paths:
        raise FileNotFoundError(f"no model in {folder}: train one with `make model` or set MODEL_DIR")
    return paths


def save_metadata(model_path: Path, metadata: dict) -> dict:
    """Write the metadata of the model saved at ``model_path`` (its flatbuffers beside it), with the
    sha256 of the model file and of each flatbuffer added; return it."""
    metadata = {**metadata, "model_sha256": file_sha256(model_path)}
    for precision, entry in metadata["litert"].items():
        entry.update(file=litert_path(model_path, precision).name,
                     sha256=file_sha256(litert_path(model_path, precision)))
    metadata_path(model_path).write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def read_metadata(model_path: Path) -> dict:
    """The metadata saved beside a model, checked against the model file, its flatbuffers and this
    code's input definition."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"no model at {model_path}: train one with `make model` or set MODEL_DIR")
    described = metadata_path(model_path)
    metadata = json.loads(described.read_text())
    if "model_sha256" not in metadata:
        raise ValueError(f"{described} has no model_sha256: retrain the model (make retrain)")
    if file_sha256(model_path) != metadata["model_sha256"]:
        raise ValueError(f"{model_path} is not the model {described.name} describes (sha256 differs)")
    if sorted(metadata.get("litert", {})) != sorted(LITERT_PRECISIONS):
        raise ValueError(f"{described} names no LiteRT flatbuffers: retrain the model (make retrain)")
    for precision in LITERT_PRECISIONS:
        flatbuffer = litert_path(model_path, precision)
        if not flatbuffer.is_file():
            raise FileNotFoundError(f"no {flatbuffer.name} beside {model_path.name}: retrain the model (make retrain)")
        if file_sha256(flatbuffer) != metadata["litert"][precision]["sha256"]:
            raise ValueError(f"{flatbuffer} is not the flatbuffer {described.name} describes (sha256 differs)")
    model_input.check_spec(metadata["input"])
    return metadata
