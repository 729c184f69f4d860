"""Image normalisation as pure functions: uploaded bytes -> 28x28 uint8 pixels, as MNIST made them.

Whatever people send (any mode Pillow reads, any size, dark ink on paper or light on dark,
transparent canvases, phone photos, a small digit somewhere on a page), :func:`uploads_to_pixels`
turns it into what :func:`model_input.to_model_input` takes, the way MNIST itself was made:

1. upright per the EXIF orientation; grayscale, with alpha flattened onto a background that
   contrasts with the opaque strokes, 16-bit and float images scaled by their own range;
2. polarity decided from the image itself: the border is background, so a light border means dark
   ink, and the image is inverted to make the digit bright on dark;
3. background subtracted and contrast stretched, with a noise floor estimated from the border;
4. cropped to the ink's bounding box, found on a median-filtered mask so noise specks do not count;
5. the longer side scaled to 20 px keeping the aspect ratio, pasted into 28x28 so that its centre
   of mass is at MNIST's (14, 14).

Images of one size are normalised together, as one stack (:func:`normalise_many`): NumPy over the
whole stack and one median filter for all of them, so a batch of small uploads costs a
fraction of one pass per image, and every image comes out exactly as it would alone. Training
passes the MNIST images through the same code (:func:`normalise_stack`) so the model sees exactly
what serving makes. Limits are explicit: an image whose header declares more pixels than the
limit (``max_pixels``, the MAX_IMAGE_PIXELS setting) is refused before it is decoded
(decompression bombs). The errors are :mod:`mnist_service.errors`' upload errors.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnist_service import model_input
from mnist_service.errors import ImageTooLarge, NoDigitFound, UnreadableImage
from mnist_service.settings import Settings

# decode() checks each image's declared size against the caller's limit before decoding it, so
# Pillow's own process-wide limit (a warning, then an error past twice it) stays out of the way.
Image.MAX_IMAGE_PIXELS = None
MAX_PIXELS = Settings.max_image_pixels  # the default limit: 4000x4000

WORKING_SIDE = 1024  # larger images are reduced to this before the search for the digit
BORDER_SHARE = 0.04  # the outer 4% of each side (at least 1 px) is taken as background
MASK_LEVEL = 0.35  # share of the ink's contrast above which a pixel counts for the bounding box
MIN_CONTRAST = 24  # gray levels between background and ink below which the image is blank


def decode(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open and fully decode an uploaded image (the first frame of an animation), turned upright
    by its EXIF orientation, or raise; an image of more than ``max_pixels`` is not decoded."""
    if not data:
        raise UnreadableImage("the uploaded file is empty")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise UnreadableImage("the uploaded file is not an image format the server reads") from None
    pixels = image.width * image.height
    if pixels > max_pixels:
        raise ImageTooLarge(
            f"the image is {image.width}x{image.height} = {pixels} pixels, over the limit of {max_pixels}"
        )
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as error:
        raise UnreadableImage(f"the image data is truncated or corrupt ({error})") from None
    ImageOps.exif_transpose(image, in_place=True)  # the image is new: no copy needed
    return image


def grayscale(image: Image.Image) -> Image.Image:
    """Any image in 8-bit grayscale ("L"; the image itself if it is that already): alpha
    flattened, deep modes scaled.

    Transparent pixels become a background that contrasts with the opaque ones (white behind dark
    strokes, black behind light ones), because a canvas export often stores its transparent
    background as black with alpha 0, and dropping alpha would make black strokes vanish.
    """
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        values = np.asarray(image, dtype=np.float64)
        low, high = values.min(), values.max()
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        return Image.fromarray(scaled.round().astype(np.uint8), "L")
    if not image.has_transparency_data:
        return image if image.mode == "L" else image.convert("L")
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
# The most pixels normalised as one stack: bounds its working memory when many images of one size
# come together (its NumPy arrays peak at about 60 MB).
STACK_PIXELS = 4_000_000
BLANK = "no digit found: the image is blank (nothing stands out from its background)"
FAINT = "no digit found: the ink is too faint or too thin to see at 20 px"


def medians(values: np.ndarray) -> np.ndarray:
    """The median of each row of a 2-D array, as ``np.median(values, axis=1)`` computes it, with a
    fraction of its overhead."""
    middle = values.shape[1] // 2
    if values.shape[1] % 2:
        return np.partition(values, middle, axis=1)[:, middle]
    parted = np.partition(values, (middle - 1, middle), axis=1)
    return (parted[:, middle - 1] + parted[:, middle]) / 2


def border_values(stack: np.ndarray) -> np.ndarray:
    """Each image's pixels in the outer BORDER_SHARE of each side, taken to be background: (N, K)."""
    count, height, width = stack.shape
    rows = max(1, round(height * BORDER_SHARE))
    cols = max(1, round(width * BORDER_SHARE))
    sides = (stack[:, :rows], stack[:, -rows:], stack[:, :, :cols], stack[:, :, -cols:])
    return np.concatenate([side.reshape(count, -1) for side in sides], axis=1)


def median_filtered(stack: np.ndarray) -> np.ndarray:
    """The 3x3 median filter (edges repeated, as Pillow's MedianFilter(3) does it) of each image
    of a stack (N, height, width), by NumPy over the whole stack; images under 3 px a side are
    left as they are.

    Each column of three pixels is sorted once (its lowest, median and highest), and a window's
    median is the median of three values: the highest of its columns' lowest, the median of their
    medians, and the lowest of their highest. Pillow's rank filter gives the same pixels (a test
    checks it), one image at a time at several times the cost."""
    count, height, width = stack.shape
    if min(height, width) < 3:
        return stack
    padded = np.empty((count, height + 2, width + 2), np.uint8)
    padded[:, 1:-1, 1:-1] = stack
    padded[:, 0, 1:-1], padded[:, -1, 1:-1] = stack[:, 0], stack[:, -1]
    padded[:, :, 0], padded[:, :, -1] = padded[:, :, 1], padded[:, :, -2]
    up, centre, down = padded[:, :-2], padded[:, 1:-1], padded[:, 2:]
    low, high = np.minimum(up, centre), np.maximum(up, centre)
    middle = np.maximum(low, np.minimum(high, down))
    np.minimum(low, down, out=low)
    np.maximum(high, down, out=high)
    lows = np.maximum(np.maximum(low[:, :, :-2], low[:, :, 1:-1]), low[:, :, 2:])
    highs = np.minimum(np.minimum(high[:, :, :-2], high[:, :, 1:-1]), high[:, :, 2:])
    medians = median_of_three(middle[:, :, :-2], middle[:, :, 1:-1], middle[:, :, 2:])
    return median_of_three(lows, medians, highs)


def median_of_three(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The median of three arrays, element by element."""
    return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))


def ink_images(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a stack of grayscale images (N, height, width): each digit bright (255) on a black (0)
    background whatever its polarity, a 3x3 median-filtered copy of it (isolated noise specks
    removed) for finding the digit, and which images are blank (nothing to find).

    The border is background. If it lies nearer the darkest than the brightest pixel of the
    median-filtered image (one hot pixel does not count), the ink is dark and the image is inverted.
    Then the background level (the border's median) and noise up to three robust standard
    deviations of the border above it go to 0, and the ink's peak to 255: one 256-entry lookup
    table per image, reversed for an inverted one.
    """
    count = len(stack)
    smooth = median_filtered(stack)
    border = border_values(stack).astype(np.float64)
    background = medians(border)
    darkest = smooth.reshape(count, -1).min(axis=1).astype(np.float64)
    brightest = smooth.reshape(count, -1).max(axis=1).astype(np.float64)
    inverted = background - darkest > brightest - background
    border = np.where(inverted[:, None], 255 - border, border)
    background = np.where(inverted, 255 - background, background)
    brightest = np.where(inverted, 255 - darkest, brightest)
    blank = brightest - background < MIN_CONTRAST
    noise = 3 * 1.4826 * medians(np.abs(border - background[:, None]))
    floor = np.minimum(background + noise, (background + brightest) / 2)
    floor[blank], brightest[blank] = 0, 255  # any table will do: a blank image gets no digit
    levels = ((np.arange(256) - floor[:, None]) * (255.0 / (brightest - floor))[:, None]).clip(0, 255)
    lookups = levels.round().astype(np.uint8)
    if inverted.any():
        lookups[inverted] = lookups[inverted, ::-1]  # a dark-ink image is looked up inverted
    offsets = (np.arange(count) * 256)[:, None, None]
    return lookups.ravel()[stack + offsets], lookups.ravel()[smooth + offsets], blank


def bounding_boxes(mask: np.ndarray, grow: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """For each image of a stack of masks (N, height, width): the box of its True pixels as
    (left, upper, right, lower), as Pillow's ``getbbox`` gives it, grown by ``grow`` pixels on each
    side within the image; and whether it has any True pixel (its box means nothing if not)."""
    count, height, width = mask.shape
    rows, cols = mask.any(axis=2), mask.any(axis=1)
    top, bottom = rows.argmax(axis=1), height - rows[:, ::-1].argmax(axis=1)
    left, right = cols.argmax(axis=1), width - cols[:, ::-1].argmax(axis=1)
    boxes = np.stack([np.maximum(left - grow, 0), np.maximum(top - grow, 0),
                      np.minimum(right + grow, width), np.minimum(bottom + grow, height)], axis=1)
    return boxes, rows.any(axis=1)


def ink_boxes(ink: np.ndarray, smooth_ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bounding box of each digit's ink, ignoring isolated specks of noise, and whether there is
    one.

    The mask is the pixels of the median-filtered ink above MASK_LEVEL of its contrast, grown back
    by one pixel (which the median filter takes off strokes): the box a 3x3 maximum filter of the
    mask would have. A drawing whose strokes are all one pixel thin has nothing left after the
    median filter and uses the unfiltered ink.
    """
    boxes, found = bounding_boxes(smooth_ink > MASK_THRESHOLD, grow=1)
    if not found.all():
        thin_boxes, thin_found = bounding_boxes(ink > MASK_THRESHOLD)
        boxes = np.where(found[:, None], boxes, thin_boxes)
        found = found | thin_found
    return boxes, found


def fit_digits(ink: np.ndarray, boxes: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, list]:
    """Each digit cropped to its box and scaled by Pillow (LANCZOS) so that its longer side is 20 px,
    keeping the aspect ratio: a stack (N, 20, 20), each digit at its top left with zeros around it,
    and each digit's (width, height); only the images marked in ``which``."""
    count, height, width = ink.shape
    side = model_input.DIGIT_BOX
    tall = Image.fromarray(ink.reshape(count * height, width))
    fitted = Image.new("L", (side, side * count))
    sizes = [(0, 0)] * count
    for n, (left, upper, right, lower) in zip(np.flatnonzero(which).tolist(), boxes[which].tolist()):
        digit = tall.crop((left, upper + n * height, right, lower + n * height))
        digit = ImageOps.contain(digit, (side, side), Image.Resampling.LANCZOS)
        fitted.paste(digit, (0, n * side))
        sizes[n] = digit.size
    return np.array(fitted).reshape(count, side, side), sizes


def centre_in_frames(digits: np.ndarray, sizes: list, which: np.ndarray) -> np.ndarray:
    """Paste each digit (at most 20x20, at the top left of its tile) into a 28x28 frame with its
    centre of mass at model_input.CENTRE; the images not marked in ``which`` stay empty."""
    frames = np.zeros((len(digits), model_input.HEIGHT, model_input.WIDTH), np.uint8)
    mass = digits.astype(np.float64)  # integers: every sum below is exact, whatever its order
    total = mass.sum(axis=(1, 2))
    positions = np.arange(digits.shape[1])
    centre_rows = mass.sum(axis=2) @ positions
    centre_cols = mass.sum(axis=1) @ positions
    chosen = np.flatnonzero(which)
    widths, heights = np.array([sizes[n] for n in chosen], np.int64).reshape(-1, 2).T
    # Rounded half to even, as Python's round(); then kept inside the frame.
    tops = np.minimum(np.maximum(np.round(model_input.CENTRE[0] - centre_rows[chosen] / total[chosen]), 0),
                      model_input.HEIGHT - heights).astype(np.int64)
    lefts = np.minimum(np.maximum(np.round(model_input.CENTRE[1] - centre_cols[chosen] / total[chosen]), 0),
                       model_input.WIDTH - widths).astype(np.int64)
    for n, top, left, width, height in zip(chosen.tolist(), tops.tolist(), lefts.tolist(),
                                           widths.tolist(), heights.tolist()):
        frames[n, top : top + height, left : left + width] = digits[n, :height, :width]
    return frames


def normalise_same_size(grays: list[Image.Image]) -> list[np.ndarray | NoDigitFound]:
    """Normalise grayscale images of one size as one stack (see normalise_many)."""
    width, height = grays[0].size
    tall = Image.new("L", (width, height * len(grays)))
    for n, gray in enumerate(grays):
        tall.paste(gray, (0, n * height))
    stack = np.asarray(tall).reshape(len(grays), height, width)
    ink, smooth_ink, blank = ink_images(stack)
    boxes, found = ink_boxes(ink, smooth_ink)
    fitted = found & ~blank
    digits, sizes = fit_digits(ink, boxes, fitted)
    peaks = digits.max(axis=(1, 2))
    faint = peaks < 1
    # Thin strokes of a large image come out faint after scaling down; MNIST's strokes peak at 255.
    dim = (peaks < 255) & ~faint
    if dim.any():
        scale = 255.0 / peaks[dim]
        digits[dim] = np.clip(digits[dim] * scale[:, None, None], 0, 255).round().astype(np.uint8)
    normalised = fitted & ~faint
    frames = centre_in_frames(digits, sizes, normalised)
    return [frame if ok else NoDigitFound(FAINT if fit else BLANK)
            for frame, ok, fit in zip(frames, normalised, fitted)]


def reduced(gray: Image.Image) -> Image.Image:
    """``gray``, or if it is over WORKING_SIDE a side, reduced to that (BOX filter) for the search
    for the digit."""
    if max(gray.size) > WORKING_SIDE:
        return ImageOps.contain(gray, (WORKING_SIDE, WORKING_SIDE), Image.Resampling.BOX)
    return gray


def normalise_many(grays: list[Image.Image]) -> list[np.ndarray | NoDigitFound]:
    """Grayscale images of digits, any polarity and size -> 28x28 uint8 pixels each, MNIST-style, or
    the NoDigitFound that says why an image has none.

    Images of the same size are normalised together as one stack, NumPy over the whole stack (the
    median filter included), so a batch of small uploads costs a fraction of one pass per image.
    Every image comes out exactly as it would alone.
    """
    grays = [reduced(gray) for gray in grays]
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, gray in enumerate(grays):
        by_size.setdefault(gray.size, []).append(index)
    results: list = [None] * len(grays)
    for (width, height), indices in by_size.items():
        stack_size = max(1, STACK_PIXELS // (width * height))
        for start in range(0, len(indices), stack_size):
            chunk = indices[start : start + stack_size]
            for index, result in zip(chunk, normalise_same_size([grays[i] for i in chunk])):
                results[index] = result
    return results


def raise_any(results: list) -> list[np.ndarray]:
    """``results`` (pixels or errors, as normalise_many gives them) if none is an error, else the
    first error raised."""
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


def normalise(gray: Image.Image) -> np.ndarray:
    """A grayscale image of one digit, any polarity and size -> 28x28 uint8 pixels, MNIST-style."""
    return raise_any(normalise_many([gray]))[0]


def normalise_stack(pixels: np.ndarray) -> np.ndarray:
    """Normalise a stack of grayscale images, (N, height, width) uint8, as uploads are (training
    passes MNIST through this, so it sees what serving makes)."""
    return np.stack(raise_any(normalise_many([Image.fromarray(image) for image in pixels])))


def uploads_to_pixels(uploads: list[bytes], max_pixels: int = MAX_PIXELS) -> list[np.ndarray | Exception]:
    """Uploaded files' bytes -> 28x28 uint8 pixels for each, or the error that says why it has none
    (an UploadError; or whatever else decoding raised, which fails only its own upload). The
    readable images are normalised together (normalise_many)."""
    results: list = []
    for data in uploads:
        try:  # reduced at once: a batch of large photos holds at most WORKING_SIDE^2 pixels each
            results.append(reduced(grayscale(decode(data, max_pixels))))
        except Exception as error:
            results.append(error)
    readable = [n for n, result in enumerate(results) if isinstance(result, Image.Image)]
    grays = [results[n] for n in readable]
    try:
        normalised = normalise_many(grays)
    except Exception:  # unexpected: normalise each alone, so it fails only its own upload
        normalised = []
        for gray in grays:
            try:
                normalised.extend(normalise_many([gray]))
            except Exception as error:
                normalised.append(error)
    for n, result in zip(readable, normalised):
        results[n] = result
    return results


def upload_to_pixels(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Uploaded file bytes -> 28x28 uint8 pixels, or the UploadError that says why not."""
    return raise_any(uploads_to_pixels([data], max_pixels))[0]
