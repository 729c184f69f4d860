"""Image normalisation: bytes -> 28x28 uint8 pixels, and clear errors for what is not an image."""

import io

import numpy as np
import pytest
from PIL import Image

import preprocess


def encode(image: Image.Image, fmt="PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def test_a_28x28_grayscale_png_is_taken_as_is(samples):
    data = samples[5].read_bytes()
    np.testing.assert_array_equal(preprocess.upload_to_pixels(data), np.asarray(Image.open(samples[5])))


def test_colour_modes_become_grayscale():
    rgb = Image.new("RGB", (28, 28), (255, 255, 255))
    pixels = preprocess.upload_to_pixels(encode(rgb))
    assert pixels.shape == (28, 28) and pixels.dtype == np.uint8 and pixels.min() == 255


def test_a_tall_image_is_fitted_whole_not_cropped():
    """Ink at the very top and bottom of a 28x84 image survives (ImageOps.fit would crop it)."""
    tall = np.zeros((84, 28), np.uint8)
    tall[:6], tall[-6:] = 255, 255
    pixels = preprocess.upload_to_pixels(encode(Image.fromarray(tall)))
    assert pixels.shape == (28, 28)
    assert pixels[:3].max() > 128 and pixels[-3:].max() > 128
    assert pixels[:, :8].max() == 0, "the padding is background"


def test_exif_orientation_is_honoured():
    """A phone photo stored sideways with an EXIF 'rotate' tag is turned upright."""
    stored = np.zeros((28, 28), np.uint8)
    stored[:, :4] = 255  # ink on the left edge as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    pixels = preprocess.upload_to_pixels(encode(Image.fromarray(stored), "JPEG", exif=exif, quality=100))
    assert pixels[:4].mean() > 200, "upright, the ink is along the top"
    assert pixels[:, :4].mean() < 100


@pytest.mark.parametrize(
    "data, error, message",
    [
        (b"", preprocess.UnreadableImage, "empty"),
        (b"%PDF-1.7 not an image", preprocess.UnreadableImage, "not an image format"),
    ],
)
def test_what_is_not_an_image_is_refused(data, error, message):
    with pytest.raises(error, match=message):
        preprocess.decode(data)


def test_a_truncated_image_is_refused(samples):
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)))
    with pytest.raises(preprocess.UnreadableImage, match="truncated or corrupt"):
        preprocess.decode(data[: len(data) // 2])


def test_an_image_over_the_pixel_limit_is_refused_before_decoding():
    """A 1-bit 5000x5000 PNG is a few KB on the wire but 25 megapixels once decoded."""
    bomb = encode(Image.new("1", (5000, 5000)))
    assert len(bomb) < 10_000
    with pytest.raises(preprocess.ImageTooLarge, match="5000x5000 = 25000000 pixels, over the limit of 16000000"):
        preprocess.decode(bomb)


def test_an_image_past_pillows_own_bomb_limit_is_refused_the_same_way():
    """Over twice the limit, Pillow itself refuses to open it; the error is still ImageTooLarge."""
    with pytest.raises(preprocess.ImageTooLarge, match="over the limit of 16000000"):
        preprocess.decode(encode(Image.new("1", (6000, 6000))))
