"""The MNIST database: reading and checking its IDX files, and finding them.

Training reads MNIST from, in order: an explicit folder (``--data`` or ``$MNIST_DATA``), the
folder ``var/data/mnist/`` when it exists (how the Docker build finds the data in its context),
and only then Keras' own download (for hosts that reach the internet). A folder holds the four
gzip-compressed IDX files under their standard names.

IDX layout: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions, one
big-endian 4-byte size per dimension, then the values in C order.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent / "var" / "data" / "mnist"

FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}

# The shapes the MNIST files must have: a wrong or swapped file is an error, not a silent mix-up.
EXPECTED_SHAPES = {
    "x_train": (60_000, 28, 28),
    "y_train": (60_000,),
    "x_test": (10_000, 28, 28),
    "y_test": (10_000,),
}

UNSIGNED_BYTE = 0x08


class IdxError(ValueError):
    """An IDX file is missing, corrupt, or not the MNIST file it is named as."""


@dataclass(frozen=True)
class Mnist:
    """The MNIST splits as uint8 arrays, plus where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    def content_sha256(self) -> str:
        """A checksum of the arrays themselves: the same data gives the same value from any source."""
        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_test, self.y_test):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()


def parse_idx(raw: bytes, name: str = "IDX data") -> np.ndarray:
    """Decode the bytes of one (uncompressed) IDX file of unsigned bytes into an array."""
    if len(raw) < 4:
        raise IdxError(f"{name}: {len(raw)} bytes is too short for an IDX header")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0:
        raise IdxError(f"{name}: not an IDX file (magic number starts with {zero:#06x}, not 0)")
    if dtype != UNSIGNED_BYTE:
        raise IdxError(f"{name}: value type {dtype:#04x} is not unsigned byte (0x08)")
    if ndim == 0:
        raise IdxError(f"{name}: header declares no dimensions")
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise IdxError(f"{name}: header declares {ndim} dimensions but the file ends inside it")
    shape = struct.unpack(f">{ndim}I", raw[4:header_end])
    expected = int(np.prod(shape, dtype=np.int64))
    found = len(raw) - header_end
    if found != expected:
        raise IdxError(f"{name}: header shape {shape} needs {expected} values, file has {found}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_end).reshape(shape)


def read_idx(path: Path) -> np.ndarray:
    """Read one gzip-compressed IDX file."""
    try:
        packed = Path(path).read_bytes()
    except FileNotFoundError:
        raise IdxError(f"{path}: file not found") from None
    try:
        raw = gzip.decompress(packed)
    except (OSError, EOFError) as error:
        raise IdxError(f"{path}: not a valid gzip file ({error})") from None
    return parse_idx(raw, name=str(path))


def load_idx_folder(folder: Path) -> Mnist:
    """Load and check the four MNIST IDX files of a folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise IdxError(f"{folder}: MNIST data folder not found")
    arrays = {}
    for key, filename in FILES.items():
        array = read_idx(folder / filename)
        if array.shape != EXPECTED_SHAPES[key]:
            raise IdxError(
                f"{folder / filename}: shape {array.shape}, expected {EXPECTED_SHAPES[key]}"
            )
        arrays[key] = array
    for key in ("y_train", "y_test"):
        if arrays[key].max() > 9:
            raise IdxError(f"{folder / FILES[key]}: labels outside 0-9")
    return Mnist(**arrays, source=str(folder))


def load_keras_download() -> Mnist:
    """Download MNIST through Keras (needs the internet; Keras verifies the file's hash)."""
    import keras

    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    return Mnist(x_train, y_train, x_test, y_test, source="keras download")


def resolve_data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The folder to read MNIST from, or None to download it.

    An explicit folder (argument, then ``$MNIST_DATA``) must exist; ``var/data/mnist/`` is used
    only when present.
    """
    chosen = explicit or os.environ.get("MNIST_DATA")
    if chosen:
        return Path(chosen)
    return DEFAULT_DATA_DIR if DEFAULT_DATA_DIR.is_dir() else None


def load_mnist(explicit: str | os.PathLike | None = None) -> Mnist:
    """Load MNIST from the folder :func:`resolve_data_dir` picks, else download it."""
    folder = resolve_data_dir(explicit)
    return load_idx_folder(folder) if folder is not None else load_keras_download()
