"""Image normalisation as pure functions: uploaded bytes -> 28x28 uint8 pixels.

The result is what :func:`model_input.to_model_input` takes: 0 = background, 255 = ink, the
digit bright on dark like MNIST. Limits are explicit: an image whose header declares more than
:data:`MAX_PIXELS` pixels is refused before it is decoded (decompression bombs).
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

import model_input

# The largest image accepted, in pixels (width x height); 4000x4000 by default.
MAX_PIXELS = int(os.environ.get("MAX_IMAGE_PIXELS", 16_000_000))
# Pillow only warns between MAX_IMAGE_PIXELS and twice that; we check the limit ourselves in
# decode() and set Pillow's so that its own error fires for anything it opens past ours.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# Between the limit and twice it Pillow only warns; decode() refuses those images itself.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class UnreadableImage(ValueError):
    """The upload is empty, not an image format Pillow reads, or its image data is corrupt."""


class ImageTooLarge(ValueError):
    """The image declares more pixels than MAX_PIXELS."""


def decode(data: bytes) -> Image.Image:
    """Open and fully decode an uploaded image, or raise UnreadableImage / ImageTooLarge."""
    if not data:
        raise UnreadableImage("the uploaded file is empty")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise ImageTooLarge(f"the image is over the limit of {MAX_PIXELS} pixels ({error})") from None
    except UnidentifiedImageError:
        raise UnreadableImage("the uploaded file is not an image format the server reads") from None
    pixels = image.width * image.height
    if pixels > MAX_PIXELS:
        raise ImageTooLarge(
            f"the image is {image.width}x{image.height} = {pixels} pixels, over the limit of {MAX_PIXELS}"
        )
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as error:
        raise UnreadableImage(f"the image data is truncated or corrupt ({error})") from None
    return image


def to_pixels(image: Image.Image) -> np.ndarray:
    """Grayscale 28x28 uint8 pixels of an image, upright per its EXIF orientation.

    An image of another size is scaled to fit 28x28 keeping its aspect ratio and padded with
    background, so nothing of the digit is cropped away.
    """
    gray = ImageOps.exif_transpose(image).convert("L")
    size = (model_input.WIDTH, model_input.HEIGHT)
    if gray.size != size:
        gray = ImageOps.pad(gray, size, method=Image.Resampling.LANCZOS, color=0)
    return np.asarray(gray, dtype=np.uint8)


def upload_to_pixels(data: bytes) -> np.ndarray:
    """Uploaded file bytes -> 28x28 uint8 pixels (see decode and to_pixels)."""
    return to_pixels(decode(data))
