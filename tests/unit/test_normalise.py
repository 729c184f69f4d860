"""Image normalisation: whatever people upload -> 28x28 uint8 pixels framed as MNIST's, and clear
errors for what is not an image or has no digit.

Each kind of input renders the same MNIST test digit (sample-3) another way, and the normalised
result must be the digit as MNIST frames it: bright ink on black, centre of mass near (14, 14),
and close to what the original 28x28 digit normalises to.
"""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from mnist_service import errors, model_input, normalise
from tools.realistic_uploads import encode, system_fonts


@pytest.fixture(scope="module")
def digit(samples) -> np.ndarray:
    """The 28x28 MNIST digit the cases render: white on black."""
    return np.asarray(Image.open(samples[3]))


@pytest.fixture(scope="module")
def reference(digit) -> np.ndarray:
    return normalise.normalise(Image.fromarray(digit))


def ink_mask(digit: np.ndarray, scale: int) -> Image.Image:
    """The digit as an ink mask (255 = ink), ``scale`` times MNIST's size."""
    return Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)


def on_paper(mask: Image.Image, size, at, paper=235, ink=30) -> Image.Image:
    """Dark ink laid through a mask on light paper (grayscale), the mask's top-left at ``at``."""
    page = Image.new("L", size, paper)
    page.paste(Image.new("L", mask.size, ink), at, mask)
    return page


def assert_mnist_like(pixels: np.ndarray, reference: np.ndarray, similarity: float = 0.8):
    """28x28 uint8, digit bright on black, centred by mass, and the same digit as the reference."""
    assert pixels.shape == (28, 28) and pixels.dtype == np.uint8
    values = model_input.to_model_input(pixels)[0, :, :, 0]
    assert values.min() == 0.0 and values.max() == 1.0, "the ink peaks at 1, the background is 0"
    border = np.concatenate([values[:2].ravel(), values[-2:].ravel(), values[:, :2].ravel(), values[:, -2:].ravel()])
    assert border.max() < 0.2, "the digit is bright on a dark background, with a margin"
    rows, cols = np.arange(28) @ values.sum(axis=1) / values.sum(), np.arange(28) @ values.sum(axis=0) / values.sum()
    assert abs(rows - 14) < 1 and abs(cols - 14) < 1, f"centre of mass at ({rows:.1f}, {cols:.1f})"
    correlation = np.corrcoef(pixels.ravel().astype(float), reference.ravel().astype(float))[0, 1]
    assert correlation > similarity, f"looks like the reference digit only to {correlation:.2f}"


def test_an_mnist_digit_keeps_its_framing(digit):
    """MNIST digits are already framed this way: normalising one moves and scales it only a little."""
    pixels = normalise.upload_to_pixels(encode(Image.fromarray(digit)))
    assert_mnist_like(pixels, digit, similarity=0.8)


def test_mnist_digits_come_out_as_they_went_in(mnist):
    """Training and the test split go through normalisation: MNIST's digits must keep their 20 px
    box and their pixels, not be resampled (a box one pixel too wide each side shrinks them by a
    tenth and blurs them, and costs the model accuracy on the test split)."""
    digits = mnist.x_test[:1000]
    pixels = normalise.normalise_stack(digits)
    sides = [max(right - left, bottom - top) for left, top, right, bottom in normalise.bounding_boxes(pixels > 0)[0]]
    assert np.mean(np.array(sides) == 20) > 0.97, "the longer side stays 20 px"
    assert np.abs(pixels.astype(int) - digits).mean() < 2, "the pixels stay as they were, within a few levels"


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA", "P", "1", "I;16", "I", "F", "CMYK"])
def test_every_image_mode(mode, digit, reference):
    """Dark ink on light paper, 5x MNIST's size, stored in each mode Pillow has."""
    page = on_paper(ink_mask(digit, 5), (140, 140), (0, 0))
    if mode == "1":
        image = page.point(lambda v: 255 if v > 128 else 0).convert("1")
    elif mode.startswith("I") or mode == "F":
        dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
        image = Image.fromarray((np.asarray(page, np.float64) * 257).astype(dtype))
        assert image.mode == mode
    else:
        image = page.convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I", "F") else "PNG"
    assert_mnist_like(normalise.upload_to_pixels(encode(image, fmt)), reference)


@pytest.mark.parametrize("fmt, params", [("JPEG", {"quality": 75}), ("GIF", {}), ("BMP", {}), ("WEBP", {"quality": 80}),
                                         ("TIFF", {})])
def test_every_common_format(fmt, params, digit, reference):
    page = on_paper(ink_mask(digit, 4), (112, 112), (0, 0)).convert("RGB")
    assert_mnist_like(normalise.upload_to_pixels(encode(page, fmt, **params)), reference)


def test_an_animated_gif_is_read_by_its_first_frame(digit, reference):
    first = on_paper(ink_mask(digit, 4), (112, 112), (0, 0))
    second = Image.new("L", (112, 112), 235)
    data = encode(first, "GIF", save_all=True, append_images=[second], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert_mnist_like(normalise.upload_to_pixels(data), reference)


@pytest.mark.parametrize("stroke", [(0, 0, 0), (255, 255, 255), (30, 60, 200)])
def test_a_canvas_export_with_a_transparent_background(stroke, digit, reference):
    """RGBA as a browser canvas exports it: RGB 0 and alpha 0 around opaque strokes of any colour.
    Dropping alpha would leave black strokes on black."""
    mask = ink_mask(digit, 10)
    rgba = np.zeros((280, 280, 4), np.uint8)
    rgba[..., :3] = np.where(np.asarray(mask)[..., None] > 0, stroke, 0)
    rgba[..., 3] = np.asarray(mask)
    assert_mnist_like(normalise.upload_to_pixels(encode(Image.fromarray(rgba, "RGBA"))), reference)


def test_a_palette_image_with_a_transparent_colour(digit, reference):
    mask = ink_mask(digit, 5).point(lambda v: 255 if v > 100 else 0)
    image = Image.new("P", mask.size, 0)
    image.putpalette([0, 0, 0, 20, 20, 120] + [0] * 762)
    image.paste(1, (0, 0), mask)
    data = encode(image, "PNG", transparency=0)
    assert Image.open(io.BytesIO(data)).has_transparency_data
    assert_mnist_like(normalise.upload_to_pixels(data), reference)


@pytest.mark.parametrize("paper, ink", [(235, 30), (30, 235)], ids=["dark-on-light", "light-on-dark"])
def test_the_polarity_is_read_from_the_image(paper, ink, digit, reference):
    page = on_paper(ink_mask(digit, 6), (200, 200), (20, 20), paper=paper, ink=ink)
    assert_mnist_like(normalise.upload_to_pixels(encode(page)), reference)


def test_coloured_ink_on_tinted_paper_with_noise_blur_and_jpeg(digit, reference):
    rng = np.random.default_rng(7)
    mask = np.asarray(ink_mask(digit, 6), np.float64)[..., None] / 255
    page = (1 - mask) * np.array([225, 205, 150]) + mask * np.array([20, 40, 160])
    page = np.clip(page + rng.normal(0, 8, page.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(page, "RGB").filter(ImageFilter.GaussianBlur(1.2))
    assert_mnist_like(normalise.upload_to_pixels(encode(image, "JPEG", quality=60)), reference)


def test_exif_orientation_is_honoured(digit, reference):
    """A phone photo stored sideways with an EXIF tag that says 'rotate 90 degrees clockwise'."""
    upright = on_paper(ink_mask(digit, 4), (112, 112), (0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    assert_mnist_like(normalise.upload_to_pixels(encode(stored, "JPEG", exif=exif, quality=95)), reference)
    plain = normalise.upload_to_pixels(encode(stored, "JPEG", quality=95))
    assert np.corrcoef(plain.ravel(), reference.ravel())[0, 1] < 0.5, "without the tag it would be sideways"


@pytest.mark.parametrize("at", [(900, 40), (3, 700), (1130, 1130)], ids=["top-right", "left-edge", "bottom-corner"])
def test_a_small_digit_anywhere_on_a_large_page(at, digit, reference):
    page = on_paper(ink_mask(digit, 2), (1200, 1200), at)
    assert_mnist_like(normalise.upload_to_pixels(encode(page)), reference)


def test_a_tiny_image(digit, reference):
    tiny = Image.fromarray(digit).resize((16, 16), Image.Resampling.LANCZOS)
    assert_mnist_like(normalise.upload_to_pixels(encode(tiny)), reference, 0.75)


def test_a_huge_image(digit, reference):
    page = on_paper(ink_mask(digit, 120), (4000, 4000), (300, 200))
    assert_mnist_like(normalise.upload_to_pixels(encode(page, "JPEG", quality=90)), reference)


@pytest.mark.parametrize("size", [(300, 60), (60, 300)], ids=["wide", "tall"])
def test_a_non_square_image_is_never_cropped(size):
    """Ink at both ends of a long image survives, both ends in the frame (ImageOps.fit crops)."""
    page = Image.new("L", size, 0)
    draw = ImageDraw.Draw(page)
    long_side = max(size)
    for start in (5, long_side - 25):
        box = (start, 20, start + 20, 40) if size[0] > size[1] else (20, start, 40, start + 20)
        draw.rectangle(box, fill=255)
    pixels = normalise.upload_to_pixels(encode(page))
    profile = pixels.max(axis=0) if size[0] > size[1] else pixels.max(axis=1)
    inked = np.nonzero(profile > 128)[0]
    assert inked.min() <= 5 and inked.max() >= 22, "both ends are in the frame"
    assert inked.max() - inked.min() >= 19, "the longer side spans 20 px"


def test_a_printed_digit_is_framed_the_same_at_any_size_and_place():
    """The same font's "3", large near the top-left of one page and small near the bottom-right
    of another, normalises to the same MNIST-like digit."""
    fonts = system_fonts()
    assert fonts, "no system fonts found (install fonts-dejavu-core)"
    framed = []
    for size, at, font_size in [((200, 200), (10, 0), 150), ((500, 300), (420, 230), 40)]:
        page = Image.new("L", size, 255)
        ImageDraw.Draw(page).text(at, "3", fill=0, font=ImageFont.truetype(str(fonts[0]), font_size))
        framed.append(normalise.upload_to_pixels(encode(page)))
    assert_mnist_like(framed[1], framed[0], 0.9)


@pytest.mark.parametrize("image", [Image.new("L", (64, 64), 200), Image.new("RGBA", (64, 64), (0, 0, 0, 0)),
                                   Image.new("RGB", (300, 200), (250, 240, 200))],
                         ids=["gray", "transparent", "paper"])
def test_a_blank_image_has_no_digit(image):
    with pytest.raises(errors.NoDigitFound, match="no digit found"):
        normalise.upload_to_pixels(encode(image))


@pytest.mark.parametrize("size", [(300, 3), (5, 300)])
def test_a_digit_too_flat_to_scale_has_no_digit(digit, size):
    """Squashed to a few px, the digit's short side rounds to 0 px at 20 px long: a clear 422-kind error
    (the per-image code of before crashed on the empty array, a 500)."""
    with pytest.raises(errors.NoDigitFound, match="too faint or too thin"):
        normalise.upload_to_pixels(encode(Image.fromarray(digit).resize(size)))


def test_noise_alone_is_not_a_digit():
    noise = np.random.default_rng(3).normal(200, 6, (120, 120)).clip(0, 255).astype(np.uint8)
    with pytest.raises(errors.NoDigitFound):
        normalise.upload_to_pixels(encode(Image.fromarray(noise)))


@pytest.mark.parametrize(
    "data, error, message",
    [
        (b"", errors.UnreadableImage, "empty"),
        (b"%PDF-1.7 not an image", errors.UnreadableImage, "not an image format"),
    ],
)
def test_what_is_not_an_image_is_refused(data, error, message):
    with pytest.raises(error, match=message):
        normalise.decode(data)


def test_a_truncated_image_is_refused(samples):
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)))
    with pytest.raises(errors.UnreadableImage, match="truncated or corrupt"):
        normalise.decode(data[: len(data) // 2])


def test_an_image_over_the_pixel_limit_is_refused_before_decoding():
    """A 1-bit 5000x5000 PNG is a few KB on the wire but 25 megapixels once decoded."""
    bomb = encode(Image.new("1", (5000, 5000)))
    assert len(bomb) < 10_000
    with pytest.raises(errors.ImageTooLarge, match="5000x5000 = 25000000 pixels, over the limit of 16000000"):
        normalise.decode(bomb)


def test_an_image_past_pillows_own_bomb_limit_is_refused_the_same_way():
    """Over twice the limit, where Pillow's own check would refuse to open it, the error is still
    ImageTooLarge with the limit in force."""
    with pytest.raises(errors.ImageTooLarge, match="over the limit of 16000000"):
        normalise.decode(encode(Image.new("1", (6000, 6000))))


def test_the_pixel_limit_is_the_callers():
    """MAX_IMAGE_PIXELS reaches the decoder as an argument: a lower limit refuses what the default
    accepts, and a limit above Pillow's own (89 megapixels) is honoured."""
    page = encode(Image.new("L", (300, 200), 255))
    assert normalise.decode(page).size == (300, 200)
    (refused,) = normalise.uploads_to_pixels([page], max_pixels=50_000)
    assert isinstance(refused, errors.ImageTooLarge)
    assert "300x200 = 60000 pixels, over the limit of 50000" in str(refused)
    huge = encode(Image.new("1", (10_000, 10_000)))
    assert normalise.decode(huge, max_pixels=100_000_000).size == (10_000, 10_000)


@pytest.fixture(scope="module")
def mixed_uploads(samples, digit) -> list[bytes]:
    """Uploads as a batch brings them: MNIST digits of one size among a blank image and a speck of
    noise of that size, the same digit inverted, larger, tiny and on a page, and what is no image."""
    rng = np.random.default_rng(11)
    speck = np.zeros((28, 28), np.uint8)
    speck[rng.integers(0, 28, 3), rng.integers(0, 28, 3)] = 255
    edge = np.zeros((28, 28), np.uint8)
    edge[:, :3] = 255  # ink against the image's edge, next to other images in the stack
    return [
        *(path.read_bytes() for path in samples.values()),
        encode(Image.new("L", (28, 28), 0)),
        encode(Image.fromarray(speck)),
        encode(Image.fromarray(edge)),
        encode(Image.fromarray(255 - digit)),
        encode(ink_mask(digit, 5)),
        encode(Image.fromarray(digit).resize((9, 7))),
        encode(on_paper(ink_mask(digit, 2), (400, 300), (300, 200))),
        b"not an image",
    ]


def outcome(upload: bytes):
    """The pixels an upload normalises to alone, or its error's type and message."""
    try:
        return normalise.upload_to_pixels(upload)
    except errors.UploadError as error:
        return type(error), str(error)


def assert_same_outcomes(batched: list, alone: list):
    for n, (got, expected) in enumerate(zip(batched, alone, strict=True)):
        if isinstance(expected, tuple):
            assert (type(got), str(got)) == expected, f"upload {n}"
        else:
            assert np.array_equal(got, expected), f"upload {n} normalises differently in a batch"


def test_an_upload_normalises_the_same_alone_and_in_a_batch(mixed_uploads):
    """Uploads of one size are normalised together as one stack: each must come out bit for bit as
    it does alone, and a blank or unreadable one gets its own error without touching the others."""
    alone = [outcome(upload) for upload in mixed_uploads]
    assert sum(isinstance(result, np.ndarray) for result in alone) == len(mixed_uploads) - 3
    assert_same_outcomes(normalise.uploads_to_pixels(mixed_uploads), alone)
    assert_same_outcomes(normalise.uploads_to_pixels(mixed_uploads[::-1]), alone[::-1])


def test_a_stack_too_large_for_one_pass_is_normalised_in_parts(mixed_uploads, monkeypatch):
    alone = [outcome(upload) for upload in mixed_uploads]
    monkeypatch.setattr(normalise, "STACK_PIXELS", 3 * 28 * 28)
    assert_same_outcomes(normalise.uploads_to_pixels(mixed_uploads), alone)


def test_training_normalises_mnist_as_uploads_are(samples):
    """normalise_stack, which training uses, gives each MNIST digit the pixels its PNG upload gets."""
    paths = list(samples.values())
    stacked = normalise.normalise_stack(np.stack([np.asarray(Image.open(path)) for path in paths]))
    for pixels, path in zip(stacked, paths, strict=True):
        assert np.array_equal(pixels, normalise.upload_to_pixels(path.read_bytes()))


@pytest.mark.parametrize("shape", [(6, 9, 13), (1, 3, 3), (3, 3, 40), (2, 41, 3), (64, 28, 28), (1, 300, 211)])
def test_the_stacked_median_filter_is_pillows_on_each_image(shape):
    """One filter pass over a stack must give each image exactly what Pillow's own 3x3 median filter
    gives it alone, edges included (random pixels: every window counts)."""
    stack = np.random.default_rng(5).integers(0, 256, shape, dtype=np.uint8)
    for image, filtered in zip(stack, normalise.median_filtered(stack), strict=True):
        assert np.array_equal(filtered, np.asarray(Image.fromarray(image).filter(ImageFilter.MedianFilter(3))))


def test_the_stacked_bounding_boxes_are_pillows():
    masks = np.random.default_rng(6).random((40, 11, 17)) < 0.02
    boxes, found = normalise.bounding_boxes(masks)
    for mask, box, has_ink in zip(masks, boxes, found, strict=True):
        expected = Image.fromarray(mask.astype(np.uint8)).getbbox()
        assert (tuple(box.tolist()) if has_ink else None) == expected
