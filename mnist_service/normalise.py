"""Image normalisation as pure functions: uploaded bytes -> 28x28 uint8 pixels, as MNIST made them.

Whatever people send (any mode Pillow reads, any size, dark ink on paper or light on dark,
transparent canvases, phone photos, a small digit somewhere on a page, a digit on ruled paper or
in a form box), :func:`uploads_to_pixels` turns it into what :func:`model_input.to_model_input`
takes, the way MNIST itself was made:

1. upright per the EXIF orientation; grayscale, with alpha flattened onto a background that
   contrasts with the opaque strokes, 16-bit and float images scaled by their own range;
2. uneven light evened (:func:`even_light`: a shadow across a page);
3. polarity decided from the image itself: the border is background, so a light border means dark
   ink, and the image is inverted to make the digit bright on dark;
4. background subtracted and contrast stretched, with a noise floor estimated from the border;
5. the clutter taken off (:mod:`mnist_service.clutter`: paper lines, form boxes, specks, stray
   marks), or the image found to hold no single digit;
6. cropped to the digit's bounding box, found on a median-filtered mask so noise specks do not count
   and tightened to the ink's faint edge, as MNIST's box is;
7. the longer side scaled to 20 px keeping the aspect ratio, pasted into 28x28 so that its centre
   of mass is at MNIST's (14, 14).

Images of one size are normalised together, as one stack (:func:`normalise_many`): NumPy over the
whole stack and one median filter for all of them, so a batch of small uploads costs a
fraction of one pass per image, and every image comes out exactly as it would alone. Training
passes the MNIST images through the same code (:func:`normalise_stack`) so the model sees exactly
what serving makes. Limits are explicit, and checked on the header before anything is decoded:
an image that declares more pixels than the limit (``max_pixels``, the MAX_IMAGE_PIXELS setting)
is refused (decompression bombs), as is a JPEG of more scans than MAX_JPEG_SCANS, and one too thin
to hold a digit (MAX_ASPECT_RATIO) has none; PNG metadata that decompresses past Pillow's limits
(lowered here) is refused as it is read. Only the first frame or page of a file is ever decoded,
and a large JPEG at a reduced size (libjpeg's DCT scaling). Whatever Pillow raises on an upload is
that upload's error, never the server's. The errors are :mod:`mnist_service.errors`' upload errors.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter, ImageOps, PngImagePlugin, UnidentifiedImageError

from mnist_service import clutter, model_input
from mnist_service.errors import ImageTooLarge, NoDigitFound, UnreadableImage
from mnist_service.settings import Settings

# open_upload() checks each image's declared size against the caller's limit before decoding it, so
# Pillow's own process-wide limit (a warning, then an error past twice it) stays out of the way.
Image.MAX_IMAGE_PIXELS = None
# A PNG's text chunks are read (decompressed) as it is opened and kept with the image until it is
# decoded, for each upload of a request; the server reads none of them but XMP (for orientation), a
# few KB. Pillow's own bound is 64 MiB of text an image: 4 MiB is plenty.
PngImagePlugin.MAX_TEXT_MEMORY = 4 * PngImagePlugin.MAX_TEXT_CHUNK
MAX_PIXELS = Settings.max_image_pixels  # the default limit: 4000x4000

WORKING_SIDE = 1024  # larger images are reduced to this before the search for the digit
BORDER_SHARE = 0.04  # the outer 4% of each side (at least 1 px) is taken as background
MASK_LEVEL = 0.35  # share of the ink's contrast above which a pixel counts for the bounding box
EDGE_LEVEL = 0.1  # share of it above which a pixel by the digit counts as its edge (see ink_boxes)
MIN_CONTRAST = 24  # gray levels between background and ink below which the image is blank
UNEVEN_LIGHT = 24  # gray levels between the border's lightest and darkest parts past which a page is evened
LIGHT_BLOCKS = 24  # a page's light is estimated on a grid of about this many blocks a side


def open_upload(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open an uploaded image: its header read and its size checked, its pixels not decoded yet
    (:func:`load` does that); an image of more than ``max_pixels`` is refused (ImageTooLarge), and
    one too thin to hold a digit (NoDigitFound). Whatever Pillow raises on the header is the
    upload's fault (see :func:`unreadable`)."""
    if not data:
        raise UnreadableImage("the uploaded file is empty")
    refuse_too_many_pieces(data)
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise unidentified(data) from None
    except MemoryError:
        raise
    except Exception as error:
        raise unreadable(error) from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"the image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}"
        )
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise NoDigitFound(TOO_THIN.format(width=width, height=height))
    if image.format in ("JPEG", "MPO") and (scans := data.count(b"\xff\xda")) > MAX_JPEG_SCANS:
        raise ImageTooLarge(f"the JPEG holds {scans} scans, over the limit of {MAX_JPEG_SCANS}: each scan is "
                            "another pass of decoding over the whole image")
    return image


def open_uploads(uploads: list[bytes], max_pixels: int = MAX_PIXELS) -> list[Image.Image | Exception]:
    """Each upload opened (:func:`open_upload`), or the error that says why it cannot be."""
    opened: list = []
    for data in uploads:
        try:
            opened.append(open_upload(data, max_pixels))
        except Exception as error:
            opened.append(error)
    return opened


def load(image: Image.Image) -> Image.Image:
    """Decode an opened upload (the first frame of an animation, the first page of a document: Pillow
    decodes no other), turned upright by its EXIF orientation, or raise an UploadError (see
    :func:`unreadable`); EXIF that cannot be read is no orientation. A JPEG larger than
    WORKING_SIDE is decoded in grayscale at a reduced size, still at least WORKING_SIDE on its longer
    side, by libjpeg's DCT scaling (``draft``): a fraction of the work, and :func:`reduced` then
    makes the same kind of working image of it."""
    if image.format in ("JPEG", "MPO") and max(image.size) > WORKING_SIDE:
        scale = WORKING_SIDE / max(image.size)
        image.draft("L", (math.ceil(image.width * scale), math.ceil(image.height * scale)))
    try:
        image.load()
    except MemoryError:
        raise
    except Exception as error:
        raise unreadable(error) from None
    try:
        ImageOps.exif_transpose(image, in_place=True)  # the image is new: no copy needed
    except MemoryError:
        raise
    except Exception:  # the image is taken as stored (transposed in place before any later failure)
        pass
    return image


def decode(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open and fully decode an uploaded image (:func:`open_upload`, then :func:`load`), or raise an
    UploadError; an image of more than ``max_pixels`` is not decoded."""
    return load(open_upload(data, max_pixels))


# The longer side over the shorter past which an image cannot hold a digit: reduced to WORKING_SIDE,
# its shorter side would be under 1 px.
MAX_ASPECT_RATIO = WORKING_SIDE
TOO_THIN = ("no digit found: the image is {width}x{height} pixels, too thin to hold a digit (its longer side "
            f"is over {MAX_ASPECT_RATIO} times its shorter)")
# The most scans (SOS markers, counted in the whole file: a thumbnail's too) a JPEG may hold. libjpeg
# makes 6 to 10 of a progressive JPEG, encoders that tune them a few more; but each scan costs a pass
# over all the image's blocks, even one of a few bytes: 10,000 of them took 15 s at 4000x4000.
MAX_JPEG_SCANS = 100
# The most pieces (chunks, segments, blocks) the headers of a PNG, JPEG or GIF may be made of. Pillow
# reads them in Python, one at a time, keeping something of each: a 4 MiB file of empty ones costs it
# seconds and over 100 MB, a real file's headers are tens of pieces (a PNG's data in 8 KB chunks, a
# few hundred).
MAX_PIECES = 10_000


def refuse_too_many_pieces(data: bytes) -> None:
    """Raise ImageTooLarge if a PNG's chunks, a JPEG's segments before its first scan (fill bytes
    included) or a GIF's blocks and sub-blocks before its first frame are more than MAX_PIECES;
    counted without Pillow, and only up to the limit. Whatever is not a whole piece is Pillow's to
    refuse."""
    pieces, kind = 0, None
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        kind, position = "PNG chunks", 8
        while pieces <= MAX_PIECES and position + 8 <= len(data) and data[position + 4 : position + 8] != b"IEND":
            position += 12 + int.from_bytes(data[position : position + 4], "big")
            pieces += 1
    elif data.startswith(b"\xff\xd8"):
        kind, position = "JPEG segments before its image data", 2
        while pieces <= MAX_PIECES and position + 4 <= len(data) and data[position] == 0xFF:
            if data[position + 1] == 0xFF:  # fill bytes, each read alone
                run = len(data) - position - len(data[position:].lstrip(b"\xff")) - 1
                position, pieces = position + run, pieces + run
            elif data[position + 1] in (0xDA, 0xD9):  # a scan (libjpeg reads on), or the end
                break
            else:
                position += 2 + (int.from_bytes(data[position + 2 : position + 4], "big")
                                 if not 0xD0 <= data[position + 1] <= 0xD7 else 0)
                pieces += 1
    elif data[:6] in (b"GIF87a", b"GIF89a") and len(data) > 13:
        kind = "GIF blocks before its first frame"
        position = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
        while pieces <= MAX_PIECES and position + 2 < len(data) and data[position] == 0x21:
            position += 2
            while pieces <= MAX_PIECES and position < len(data) and data[position]:
                position += 1 + data[position]
                pieces += 1
            position, pieces = position + 1, pieces + 1
    if pieces > MAX_PIECES:
        raise ImageTooLarge(f"the file is made of more than {MAX_PIECES} {kind}, far more than any real image")


# Pillow's limits on what a PNG's text chunks and ICC profile decompress to (its ValueErrors name them).
METADATA_LIMITS = ("MAX_TEXT_CHUNK", "MAX_TEXT_MEMORY")
METADATA_TOO_LARGE = (
    "the image's metadata is too large: its text chunks or ICC profile decompress to more than the "
    f"server reads ({PngImagePlugin.MAX_TEXT_CHUNK // 2**20} MiB a chunk, "
    f"{PngImagePlugin.MAX_TEXT_MEMORY // 2**20} MiB in all)"
)


def unreadable(error: Exception) -> UnreadableImage | ImageTooLarge:
    """The upload error of what Pillow raised opening or decoding an image."""
    if isinstance(error, Image.DecompressionBombError):  # only if Pillow's own limit is set again
        return ImageTooLarge(f"the image is too large ({error})")
    if isinstance(error, ValueError) and any(limit in str(error) for limit in METADATA_LIMITS):
        return ImageTooLarge(METADATA_TOO_LARGE)
    reason = str(error) or type(error).__name__
    return UnreadableImage(f"the image data is truncated or corrupt ({reason})")


def unidentified(data: bytes) -> UnreadableImage:
    """The error of an upload no Pillow plugin opened: corrupt if it starts as a format Pillow
    knows (its plugin recognised the signature, then failed on the header), else of no format."""
    Image.init()
    prefix = data[:16]  # what Image.open gives each plugin's check
    for name in Image.ID:
        accept = Image.OPEN[name][1]
        try:
            claimed = accept is not None and accept(prefix)
        except Exception:
            claimed = False
        if claimed and not isinstance(claimed, str):  # a string is a plugin's warning, not a match
            return UnreadableImage(f"the image data is truncated or corrupt: the file starts as {name} but its "
                                   "header cannot be read")
    return UnreadableImage("the uploaded file is not an image format the server reads")


def grayscale(image: Image.Image) -> Image.Image:
    """Any image in 8-bit grayscale ("L"; the image itself if it is that already): alpha
    flattened, deep modes scaled (a float image's NaN and infinities too), CIELAB by its lightness.

    Transparent pixels become a background that contrasts with the opaque ones (white behind dark
    strokes, black behind light ones), because a canvas export often stores its transparent
    background as black with alpha 0, and dropping alpha would make black strokes vanish. The
    strokes' colour is that of their inside (opaque pixels whose neighbours are all opaque): an
    anti-aliased drawing's edges, opaque and fading to the paper's colour, can outnumber it.
    """
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode == "F" and not np.isfinite(values).all():  # NaN as the lowest value, infinities as the ends
            finite = values[np.isfinite(values)]
            ends = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
            values = np.nan_to_num(values, nan=ends[0], neginf=ends[0], posinf=ends[1])
        low, high = values.min(), values.max()
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        return Image.fromarray(scaled.round().astype(np.uint8), "L")
    if image.mode == "LAB":  # CIELAB (TIFF, PSD), which Pillow does not convert: its lightness
        return image.getchannel("L")
    if image.mode == "La":  # premultiplied alpha (TIFF), which Pillow converts only to straight alpha
        image = image.convert("LA")
    if not image.has_transparency_data:
        return image if image.mode == "L" else image.convert("L")
    rgba = image.convert("RGBA")
    alpha = rgba.getchannel("A")
    gray = rgba.convert("L")
    if alpha.getextrema()[0] == 255:
        return gray
    opaque = alpha.point(lambda value: 255 if value >= 128 else 0)
    inside = np.asarray(opaque.filter(ImageFilter.MinFilter(3))) > 0
    strokes = inside if inside.any() else np.asarray(opaque) > 0
    ink_level = float(np.asarray(gray)[strokes].mean()) if strokes.any() else 0.0
    background = Image.new("L", gray.size, 255 if ink_level < 128 else 0)
    return Image.composite(gray, background, alpha)


@dataclass(frozen=True)
class Found:
    """One image normalised: the 28x28 uint8 pixels the model is given, and the box the digit was
    found in (left, top, right, bottom), as shares (0-1) of the upright image's width and height."""

    pixels: np.ndarray
    box: tuple[float, float, float, float]


def pixels_of(results: list[Found | Exception]) -> list[np.ndarray | Exception]:
    """The pixels of each Found of ``results``; errors stay as they are."""
    return [result.pixels if isinstance(result, Found) else result for result in results]


# A pixel of the ink above this level (MASK_LEVEL of its contrast) counts for the bounding box.
MASK_THRESHOLD = round(255 * MASK_LEVEL)
EDGE_THRESHOLD = round(255 * EDGE_LEVEL)
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


def upper_quartiles(values: np.ndarray) -> np.ndarray:
    """The upper quartile of each row of a 2-D array."""
    index = (values.shape[1] * 3) // 4
    return np.partition(values, index, axis=1)[:, index]


def even_light(stack: np.ndarray) -> np.ndarray:
    """The stack (N, height, width) with the light of each page that is lit unevenly (a shadow
    across it) made even (a copy if any is); images under clutter.MIN_SIDE a side are left as they
    are.

    The light is uneven where the upper quartiles of the border's sixteen segments (each side in
    four: the paper's brightness there, even where a digit touches the border) spread over more than
    UNEVEN_LIGHT gray levels. Such a page, dark ink on lighter paper, is
    divided by its paper's brightness, estimated on a grid of about LIGHT_BLOCKS blocks a side: each
    block's brightest median-filtered pixel (paper shows between the strokes), a 5x5 median over the
    blocks (blocks inside a stroke up to two blocks broad take their neighbours'; a shadow's edge
    stays sharp), then interpolated bilinearly."""
    count, height, width = stack.shape
    if min(height, width) < clutter.MIN_SIDE:
        return stack
    rows, cols = max(1, round(height * BORDER_SHARE)), max(1, round(width * BORDER_SHARE))
    quarter_width, quarter_height = width // 4, height // 4  # each side in four (up to 3 px left out)
    top_bottom = np.stack([stack[:, :rows], stack[:, -rows:]], axis=1)[..., : 4 * quarter_width]
    sides = np.stack([stack[:, :, :cols], stack[:, :, -cols:]], axis=1)[:, :, : 4 * quarter_height]
    segments = np.concatenate([
        upper_quartiles(top_bottom.reshape(count, 2, rows, 4, quarter_width).transpose(0, 1, 3, 2, 4)
                        .reshape(count * 8, -1)).reshape(count, 8),
        upper_quartiles(sides.reshape(count, 2, 4, quarter_height * cols).reshape(count * 8, -1)).reshape(count, 8),
    ], axis=1)
    uneven = np.flatnonzero(segments.max(axis=1) - segments.min(axis=1) > UNEVEN_LIGHT).tolist()
    if uneven:
        stack = stack.copy()
    for n in uneven:
        smooth = median_filtered(stack[n : n + 1])[0]
        if segments[n].max() < (int(smooth.min()) + int(smooth.max())) / 2:
            continue  # light ink on a dark ground: no paper to even out
        block = max(2, math.ceil(max(height, width) / LIGHT_BLOCKS))
        brightest = block_maxima(smooth, block)
        windows = np.lib.stride_tricks.sliding_window_view(np.pad(brightest, 2, mode="edge"), (5, 5))
        paper = np.median(windows, axis=(2, 3)).astype(np.uint8)
        grown = Image.fromarray(paper).resize((paper.shape[1] * block, paper.shape[0] * block),
                                              Image.Resampling.BILINEAR)
        light = np.asarray(grown, np.float32)[:height, :width]
        level = np.float32(np.median(paper))
        stack[n] = np.clip(stack[n] * (level / np.maximum(light, 1)), 0, 255).round().astype(np.uint8)
    return stack


def block_maxima(image: np.ndarray, block: int) -> np.ndarray:
    """The brightest pixel of each ``block`` x ``block`` block of a 2-D image (the last ones padded
    with 0)."""
    height, width = image.shape
    rows, cols = -(-height // block), -(-width // block)
    padded = np.zeros((rows * block, cols * block), image.dtype)
    padded[:height, :width] = image
    return padded.reshape(rows, block, cols, block).max(axis=(1, 3))


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
    median filter and uses the unfiltered ink. The box is then tightened to the ink inside it above
    EDGE_LEVEL of its contrast: MNIST's own box, its digits' faint anti-aliased edges included but
    not the fainter ringing or blur that resizing leaves around strokes. So an MNIST digit keeps its
    20 px and is not resampled at all (the grown box alone would make most of them 21 or 22 px,
    shrunk to 20).
    """
    boxes, found = bounding_boxes(smooth_ink > MASK_THRESHOLD, grow=1)
    if not found.all():
        thin_boxes, thin_found = bounding_boxes(ink > MASK_THRESHOLD)
        boxes = np.where(found[:, None], boxes, thin_boxes)
        found = found | thin_found
    _, height, width = ink.shape
    rows, cols = np.arange(height)[None, :, None], np.arange(width)[None, None, :]
    left, upper, right, lower = (side[:, None, None] for side in boxes.T)
    # The rows' and the columns' conditions are combined apart, so only one mask is image-sized.
    inside = ((rows >= upper) & (rows < lower)) & ((cols >= left) & (cols < right))
    # A digit found has ink above MASK_THRESHOLD, so above EDGE_THRESHOLD, in its box: the tight box
    # is always defined for it (and the box of an image without a digit is never used).
    return bounding_boxes((ink > EDGE_THRESHOLD) & inside)[0], found


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


def normalise_same_size(grays: list[Image.Image]) -> list[Found | NoDigitFound]:
    """Normalise grayscale images of one size as one stack (see normalise_many)."""
    width, height = grays[0].size
    tall = Image.new("L", (width, height * len(grays)))
    for n, gray in enumerate(grays):
        tall.paste(gray, (0, n * height))
    stack = np.asarray(tall).reshape(len(grays), height, width)
    ink, smooth_ink, blank = ink_images(even_light(stack))
    problems = clutter.clear(ink, smooth_ink, MASK_THRESHOLD, ~blank)
    boxes, found = ink_boxes(ink, smooth_ink)
    fitted = found & ~blank & np.array([problem is None for problem in problems])
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
    shares = (boxes / np.array([width, height, width, height], np.float64)).tolist()
    return [Found(frame, tuple(share)) if ok else NoDigitFound(problem or (FAINT if fit else BLANK))
            for frame, share, ok, fit, problem in zip(frames, shares, normalised, fitted, problems)]


def reduced(gray: Image.Image) -> Image.Image:
    """``gray``, or if it is over WORKING_SIDE a side, reduced to that (BOX filter) for the search
    for the digit, keeping the aspect ratio as ``ImageOps.contain`` does, but never to a side under
    1 px (uploads that thin are refused before they are decoded: MAX_ASPECT_RATIO)."""
    width, height = gray.size
    if max(width, height) <= WORKING_SIDE:
        return gray
    if width > height:
        size = (WORKING_SIDE, max(1, round(height / width * WORKING_SIDE)))
    else:
        size = (max(1, round(width / height * WORKING_SIDE)), WORKING_SIDE)
    return gray.resize(size, Image.Resampling.BOX)


def normalise_many(grays: list[Image.Image]) -> list[Found | NoDigitFound]:
    """Grayscale images of digits, any polarity and size -> 28x28 uint8 pixels each, MNIST-style,
    with the box the digit was found in (a Found), or the NoDigitFound that says why an image has none.

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


def raise_any(results: list) -> list:
    """``results`` (pixels or Found, or errors, as normalise_many gives them) if none is an error,
    else the first error raised."""
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


def normalise(gray: Image.Image) -> np.ndarray:
    """A grayscale image of one digit, any polarity and size -> 28x28 uint8 pixels, MNIST-style."""
    return raise_any(normalise_many([gray]))[0].pixels


def normalise_stack(pixels: np.ndarray) -> np.ndarray:
    """Normalise a stack of grayscale images, (N, height, width) uint8, as uploads are (training
    passes MNIST through this, so it sees what serving makes)."""
    return np.stack(raise_any(pixels_of(normalise_many([Image.fromarray(image) for image in pixels]))))


def images_to_pixels(images: list[Image.Image | Exception]) -> list[np.ndarray | Exception]:
    """Opened uploads (open_uploads) -> 28x28 uint8 pixels for each, or the error that says why it
    has none (see images_to_found)."""
    return pixels_of(images_to_found(images))


def images_to_found(images: list[Image.Image | Exception]) -> list[Found | Exception]:
    """Opened uploads (open_uploads) -> each one's 28x28 uint8 pixels and where its digit was found,
    or the error that says why it has none (an UploadError; or whatever else decoding raised, which
    fails only its own upload; an error given in place of an image is passed on). The readable
    images are normalised together (normalise_many)."""
    results: list = []
    for image in images:
        if isinstance(image, Exception):
            results.append(image)
            continue
        try:  # reduced at once: a batch of large photos holds at most WORKING_SIDE^2 pixels each
            results.append(reduced(grayscale(load(image))))
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


def uploads_to_pixels(uploads: list[bytes], max_pixels: int = MAX_PIXELS) -> list[np.ndarray | Exception]:
    """Uploaded files' bytes -> 28x28 uint8 pixels for each, or the error that says why it has none
    (:func:`open_uploads`, then :func:`images_to_pixels`)."""
    return images_to_pixels(open_uploads(uploads, max_pixels))


def upload_to_pixels(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Uploaded file bytes -> 28x28 uint8 pixels, or the UploadError that says why not."""
    return upload_to_found(data, max_pixels).pixels


def upload_to_found(data: bytes, max_pixels: int = MAX_PIXELS) -> Found:
    """Uploaded file bytes -> its 28x28 uint8 pixels and where its digit was found, or the
    UploadError that says why not."""
    return raise_any(images_to_found(open_uploads([data], max_pixels)))[0]
