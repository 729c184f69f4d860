"""Image normalisation as pure functions: uploaded bytes -> 28x28 uint8 pixels, as MNIST made them.

Whatever people send (any mode Pillow reads, any size, dark ink on paper or light on dark,
transparent canvases, phone photos, a small digit somewhere on a page), :func:`to_pixels` turns it
into what :func:`model_input.to_model_input` takes, the way MNIST itself was made:

1. upright per the EXIF orientation; grayscale, with alpha flattened onto a background that
   contrasts with the opaque strokes, 16-bit and float images scaled by their own range;
2. polarity decided from the image itself: the border is background, so a light border means dark
   ink, and the image is inverted to make the digit bright on dark;
3. background subtracted and contrast stretched, with a noise floor estimated from the border;
4. cropped to the ink's bounding box, found on a median-filtered mask so noise specks do not count;
5. the longer side scaled to 20 px keeping the aspect ratio, pasted into 28x28 so that its centre
   of mass is at MNIST's (14, 14).

Training passes the MNIST images through the same :func:`normalise` so the model sees exactly
what serving makes. Limits are explicit: an image whose header declares more than
:data:`MAX_PIXELS` pixels is refused before it is decoded (decompression bombs).
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

import model_input

# The largest image accepted, in pixels (width x height); 4000x4000 by default.
MAX_PIXELS = int(os.environ.get("MAX_IMAGE_PIXELS", 16_000_000))
# Pillow refuses to open past twice its limit and only warns between the limit and twice it;
# decode() refuses those itself, so the warning is noise.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

WORKING_SIDE = 1024  # larger images are reduced to this before the search for the digit
BORDER_SHARE = 0.04  # the outer 4% of each side (at least 1 px) is taken as background
MASK_LEVEL = 0.35  # share of the ink's contrast above which a pixel counts for the bounding box
MIN_CONTRAST = 24  # gray levels between background and ink below which the image is blank


class UploadError(ValueError):
    """An upload that cannot be turned into pixels; the subclass says why, the message how."""


class UnreadableImage(UploadError):
    """The upload is empty, not an image format Pillow reads, or its image data is corrupt."""


class ImageTooLarge(UploadError):
    """The image declares more pixels than MAX_PIXELS."""


class NoDigitFound(UploadError):
    """The image is blank: nothing stands out from its background."""


def decode(data: bytes) -> Image.Image:
    """Open and fully decode an uploaded image (the first frame of an animation), or raise."""
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


def grayscale(image: Image.Image) -> Image.Image:
    """An 8-bit grayscale ("L") copy of any image: upright, alpha flattened, deep modes scaled.

    Transparent pixels become a background that contrasts with the opaque ones (white behind dark
    strokes, black behind light ones), because a canvas export often stores its transparent
    background as black with alpha 0, and dropping alpha would make black strokes vanish.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        values = np.asarray(image, dtype=np.float64)
        low, high = values.min(), values.max()
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        return Image.fromarray(scaled.round().astype(np.uint8), "L")
    if not image.has_transparency_data:
        return image.convert("L")
    rgba = image.convert("RGBA")
    alpha = rgba.getchannel("A")
    gray = rgba.convert("L")
    if alpha.getextrema()[0] == 255:
        return gray
    opaque = np.asarray(alpha) >= 128
    ink_level = float(np.asarray(gray)[opaque].mean()) if opaque.any() else 0.0
    background = Image.new("L", gray.size, 255 if ink_level < 128 else 0)
    return Image.composite(gray, background, alpha)


# A pixel of the ink above this level (MASK_LEVEL of its contrast) counts for the bounding box.
MASK_THRESHOLD = round(255 * MASK_LEVEL)
INVERT_LOOKUP = np.arange(255, -1, -1, dtype=np.uint8)
MEDIAN_3X3 = ImageFilter.MedianFilter(3)


def median(values: np.ndarray) -> float:
    """The median of a 1-D array, as ``np.median`` computes it, with a tenth of its overhead."""
    middle = len(values) // 2
    if len(values) % 2:
        return float(np.partition(values, middle)[middle])
    low, high = np.partition(values, (middle - 1, middle))[middle - 1 : middle + 1]
    return float((low + high) / 2)


def border_values(gray: np.ndarray) -> np.ndarray:
    """The pixels of the outer BORDER_SHARE of each side, taken to be background."""
    height, width = gray.shape
    rows = max(1, round(height * BORDER_SHARE))
    cols = max(1, round(width * BORDER_SHARE))
    return np.concatenate(
        [gray[:rows].ravel(), gray[-rows:].ravel(), gray[:, :cols].ravel(), gray[:, -cols:].ravel()]
    )


def ink_image(gray: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """The digit bright (255) on a black (0) background whatever the polarity of ``gray``, and a
    3x3 median-filtered copy of it (isolated noise specks removed), for finding the digit; both as
    uint8 arrays.

    The border is background. If it lies nearer the darkest than the brightest pixel of the
    median-filtered image (one hot pixel does not count), the ink is dark and the image is inverted.
    Then the background level (the border's median) and noise up to three robust standard
    deviations of the border above it go to 0, and the ink's peak to 255.
    """
    smooth = gray.filter(MEDIAN_3X3) if min(gray.size) >= 3 else gray
    pixels, smooth_pixels = np.asarray(gray), np.asarray(smooth)
    border = border_values(pixels).astype(np.float64)
    background = median(border)
    darkest, brightest = smooth.getextrema()
    if background - darkest > brightest - background:
        pixels, smooth_pixels = INVERT_LOOKUP[pixels], INVERT_LOOKUP[smooth_pixels]
        border, background, brightest = 255 - border, 255 - background, 255 - darkest
    if brightest - background < MIN_CONTRAST:
        raise NoDigitFound("no digit found: the image is blank (nothing stands out from its background)")
    noise = 3 * 1.4826 * median(np.abs(border - background))
    floor = min(background + noise, (background + brightest) / 2)
    levels = np.clip((np.arange(256) - floor) * (255.0 / (brightest - floor)), 0, 255)
    lookup = levels.round().astype(np.uint8)
    return lookup[pixels], lookup[smooth_pixels]


def bounding_box(mask: np.ndarray, grow: int = 0) -> tuple[int, int, int, int] | None:
    """(left, upper, right, lower) of the True pixels of ``mask``, as Pillow's ``getbbox`` gives it,
    grown by ``grow`` pixels on each side within the image; None if there are none."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    height, width = mask.shape
    return (max(int(cols[0]) - grow, 0), max(int(rows[0]) - grow, 0),
            min(int(cols[-1]) + 1 + grow, width), min(int(rows[-1]) + 1 + grow, height))


def ink_box(ink: np.ndarray, smooth_ink: np.ndarray) -> tuple[int, int, int, int]:
    """The bounding box of the digit's ink, ignoring isolated specks of noise.

    The mask is the pixels of the median-filtered ink above MASK_LEVEL of its contrast, grown back
    by one pixel (which the median filter takes off strokes): the box a 3x3 maximum filter of the
    mask would have. A drawing whose strokes are all one pixel thin has nothing left after the
    median filter and uses the unfiltered ink.
    """
    box = bounding_box(smooth_ink > MASK_THRESHOLD, grow=1)
    if box is None:
        box = bounding_box(ink > MASK_THRESHOLD)
    if box is None:
        raise NoDigitFound("no digit found: the image is blank (nothing stands out from its background)")
    return box


def centre_in_frame(digit: np.ndarray) -> np.ndarray:
    """Paste a digit (at most 20x20) into a 28x28 frame with its centre of mass at model_input.CENTRE."""
    frame = np.zeros((model_input.HEIGHT, model_input.WIDTH), np.uint8)
    height, width = digit.shape
    mass = digit.astype(np.float64)
    total = mass.sum()
    centre_row = (mass.sum(axis=1) @ np.arange(height)) / total
    centre_col = (mass.sum(axis=0) @ np.arange(width)) / total
    top = min(max(round(model_input.CENTRE[0] - centre_row), 0), model_input.HEIGHT - height)
    left = min(max(round(model_input.CENTRE[1] - centre_col), 0), model_input.WIDTH - width)
    frame[top : top + height, left : left + width] = digit
    return frame


def normalise(gray: Image.Image) -> np.ndarray:
    """A grayscale image of one digit, any polarity and size -> 28x28 uint8 pixels, MNIST-style."""
    if max(gray.size) > WORKING_SIDE:
        gray = ImageOps.contain(gray, (WORKING_SIDE, WORKING_SIDE), Image.Resampling.BOX)
    ink, smooth_ink = ink_image(gray)
    left, upper, right, lower = ink_box(ink, smooth_ink)
    digit = Image.fromarray(ink[upper:lower, left:right])
    digit = ImageOps.contain(digit, (model_input.DIGIT_BOX, model_input.DIGIT_BOX), Image.Resampling.LANCZOS)
    pixels = np.asarray(digit)
    peak = int(pixels.max())
    if peak < 1:
        raise NoDigitFound("no digit found: the ink is too faint or too thin to see at 20 px")
    if peak < 255:  # thin strokes of a large image come out faint after scaling down; MNIST's peak at 255
        pixels = np.clip(pixels * (255.0 / peak), 0, 255).round().astype(np.uint8)
    return centre_in_frame(pixels)


def normalise_stack(pixels: np.ndarray) -> np.ndarray:
    """Normalise a stack of grayscale images, (N, height, width) uint8, as uploads are (training
    passes MNIST through this, so it sees what serving makes)."""
    return np.stack([normalise(Image.fromarray(image)) for image in pixels])


def to_pixels(image: Image.Image) -> np.ndarray:
    """Any decoded image -> 28x28 uint8 pixels (see the module's docstring)."""
    return normalise(grayscale(image))


def upload_to_pixels(data: bytes) -> np.ndarray:
    """Uploaded file bytes -> 28x28 uint8 pixels (see decode and to_pixels)."""
    return to_pixels(decode(data))
