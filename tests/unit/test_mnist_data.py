"""Reading the MNIST IDX files: headers and shapes are checked, bad files are clear errors."""

import gzip
import struct

import numpy as np
import pytest

from mnist_service import mnist_data
from mnist_service.mnist_data import IdxError


def idx_bytes(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    header = struct.pack(">HBB", 0, type_byte, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_parse_round_trips_an_array():
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(mnist_data.parse_idx(idx_bytes(array)), array)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x00\x00", "too short"),
        (b"\x08\x03\x08\x01" + b"\x00" * 8, "not an IDX file"),
        (b"\x00\x00\x0d\x01\x00\x00\x00\x02" + b"\x00" * 8, "not unsigned byte"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "ends inside it"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05" + b"\x01\x02", "needs 5 values, file has 2"),
        (b"\x00\x00\x08\x00", "no dimensions"),
    ],
)
def test_corrupt_headers_are_refused_with_a_reason(raw, message):
    with pytest.raises(IdxError, match=message):
        mnist_data.parse_idx(raw)


def write_folder(folder, shapes, swap=False):
    names = list(mnist_data.FILES.values())
    for key, name in mnist_data.FILES.items():
        array = np.zeros(shapes[key], np.uint8)
        (folder / name).write_bytes(gzip.compress(idx_bytes(array)))
    if swap:  # labels stored under the images' name and vice versa
        a, b = folder / names[0], folder / names[1]
        data_a, data_b = a.read_bytes(), b.read_bytes()
        a.write_bytes(data_b), b.write_bytes(data_a)


def test_a_swapped_file_is_refused_by_its_shape(tmp_path):
    write_folder(tmp_path, mnist_data.EXPECTED_SHAPES, swap=True)
    with pytest.raises(IdxError, match=r"shape \(60000,\), expected \(60000, 28, 28\)"):
        mnist_data.load_idx_folder(tmp_path)


def test_a_missing_file_or_folder_is_named(tmp_path):
    write_folder(tmp_path, mnist_data.EXPECTED_SHAPES)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(IdxError, match="t10k-labels-idx1-ubyte.gz: file not found"):
        mnist_data.load_idx_folder(tmp_path)
    with pytest.raises(IdxError, match="folder not found"):
        mnist_data.load_idx_folder(tmp_path / "nowhere")


def test_a_file_that_is_not_gzip_is_refused(tmp_path):
    write_folder(tmp_path, mnist_data.EXPECTED_SHAPES)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"plain text, not gzip")
    with pytest.raises(IdxError, match="not a valid gzip file"):
        mnist_data.load_idx_folder(tmp_path)


def test_the_explicit_folder_wins_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_DATA", "/from/env")
    assert mnist_data.resolve_data_dir(tmp_path) == tmp_path
    assert str(mnist_data.resolve_data_dir()) == "/from/env"


def test_the_real_data_has_the_mnist_shapes_and_labels(mnist):
    assert mnist.x_train.shape == (60_000, 28, 28) and mnist.x_test.shape == (10_000, 28, 28)
    assert mnist.x_train.dtype == np.uint8 and mnist.x_train.max() == 255
    assert np.bincount(mnist.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
