"""A trained model on disk: the Keras model file, its metadata beside it, and the checksum that ties
the two together. Training writes them (:func:`save_metadata`); serving reads and checks them
(:func:`read_metadata`), so neither imports the other.

A model ``var/data/mnist-cnn.keras`` has its metadata in ``var/data/mnist-cnn.json``: its name,
version, test accuracy, input definition, data checksum, library versions, and the sha256 of the
model file, so a model swapped without its metadata (or the reverse) is refused by name.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mnist_service import model_input

# Where `make model` saves the models and the server serves them from by default.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "var" / "data"
MODEL_SUFFIX = ".keras"


def metadata_path(model_path: Path) -> Path:
    """Where the metadata of a saved model lives: beside it, same name, ``.json``."""
    return Path(model_path).with_suffix(".json")


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
    """Write the metadata of the model saved at ``model_path``, with the model file's sha256 added;
    return it."""
    metadata = {**metadata, "model_sha256": file_sha256(model_path)}
    metadata_path(model_path).write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def read_metadata(model_path: Path) -> dict:
    """The metadata saved beside a model, checked against the model file and this code's input
    definition."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"no model at {model_path}: train one with `make model` or set MODEL_DIR")
    described = metadata_path(model_path)
    metadata = json.loads(described.read_text())
    if "model_sha256" not in metadata:
        raise ValueError(f"{described} has no model_sha256: retrain the model (make retrain)")
    if file_sha256(model_path) != metadata["model_sha256"]:
        raise ValueError(f"{model_path} is not the model {described.name} describes (sha256 differs)")
    model_input.check_spec(metadata["input"])
    return metadata
