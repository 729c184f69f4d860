"""Finding the digit among clutter (mnist_service/clutter.py), through the normalisation of an upload:
paper lines, frames, specks, stray marks and marks at the border go, the digit stays; an image with
no single digit is refused; an MNIST digit is left as it is."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_service import clutter, errors, normalise
from tests.unit.test_normalise import ink_mask, on_paper
from tools.realistic_uploads import encode

PAGE = (420, 360)
DIGIT_AT = (150, 100)


@pytest.fixture(scope="module")
def digit(samples) -> np.ndarray:
    """The sample 5: a digit with a long horizontal stroke, which no line search may take."""
    return np.asarray(Image.open(samples[5]))


@pytest.fixture(scope="module")
def clean(digit) -> np.ndarray:
    """The digit on plain paper, normalised: what every cluttered page below must come to."""
    return normalise.upload_to_pixels(encode(on_paper(ink_mask(digit, 6), PAGE, DIGIT_AT)))


def page_with(digit: np.ndarray | None, draw_clutter, ink=30) -> bytes:
    """A PNG of the digit (six times MNIST's size, at DIGIT_AT) on a page, with clutter drawn first
    by ``draw_clutter(ImageDraw)``."""
    page = Image.new("L", PAGE, 235)
    draw_clutter(ImageDraw.Draw(page))
    if digit is not None:
        mask = ink_mask(digit, 6)
        page.paste(Image.new("L", mask.size, ink), DIGIT_AT, mask)
    return encode(page)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def ruled(draw, spacing=45, tilt=0.0, colour=185, width=2, margin=True):
    for y in range(10, PAGE[1], spacing):
        draw.line([(0, y), (PAGE[0], y + tilt * PAGE[0])], fill=colour, width=width)
    if margin:
        draw.line([(60, 0), (60, PAGE[1])], fill=150, width=2)


def squared(draw):
    for x in range(5, PAGE[0], 28):
        draw.line([(x, 0), (x, PAGE[1])], fill=195, width=1)
    for y in range(5, PAGE[1], 28):
        draw.line([(0, y), (PAGE[0], y)], fill=195, width=1)


def box(draw, left=120, top=80, right=330, bottom=300, width=3):
    draw.rectangle((left, top, right, bottom), outline=20, width=width)


def specks(draw):
    rng = np.random.default_rng(3)
    for _ in range(30):
        x, y = int(rng.integers(0, PAGE[0])), int(rng.integers(0, 90))  # above the digit
        draw.ellipse((x, y, x + 3, y + 3), fill=40)
    draw.ellipse((20, 300, 34, 314), fill=30)  # a blot in a corner
    draw.ellipse((380, 330, 392, 342), fill=30)


def stray_mark(draw):
    draw.line([(40, 150), (75, 170)], fill=30, width=8)


def border_mark(draw):
    draw.rectangle((0, 0, 70, 360), fill=60)  # the edge of the desk, a finger, the next sheet


@pytest.mark.parametrize("clutter_drawn", [
    ruled, lambda draw: ruled(draw, spacing=60, tilt=0.03, colour=170, width=3, margin=False), squared,
    box, lambda draw: box(draw, left=170, top=95, right=320, bottom=290),  # the digit touches the box
    specks, stray_mark, border_mark,
], ids=["ruled", "ruled-tilted", "squared", "form-box", "form-box-touching", "specks", "stray-mark", "border"])
def test_the_digit_is_found_among_clutter_as_on_plain_paper(digit, clean, clutter_drawn):
    found = normalise.upload_to_pixels(page_with(digit, clutter_drawn))
    assert correlation(found, clean) > 0.85, "the digit comes out as it does on plain paper"


def test_where_the_digit_crosses_a_line_its_stroke_stays(digit, clean):
    """A line through the middle of the digit: the crossings stay, so the stroke is not cut."""
    found = normalise.upload_to_pixels(page_with(digit, lambda draw: ruled(draw, spacing=80, colour=120)))
    assert correlation(found, clean) > 0.9


def test_a_row_of_comb_boxes_with_one_digit(digit, clean):
    def comb(draw):
        for left in range(10, 400, 100):
            draw.rectangle((left, 80, left + 100, 300), outline=40, width=2)
    page = Image.open(io.BytesIO(page_with(digit, comb)))
    wide = Image.new("L", (PAGE[0] + 300, PAGE[1]), 235)
    wide.paste(page, (0, 0))
    ImageDraw.Draw(wide).rectangle((410, 80, 610, 300), outline=40, width=2)
    ImageDraw.Draw(wide).line([(510, 80), (510, 300)], fill=40, width=2)
    assert correlation(normalise.upload_to_pixels(encode(wide)), clean) > 0.85


@pytest.mark.parametrize("drawn, message", [
    (lambda draw: ruled(draw), "only lines or boxes"),
    (lambda draw: box(draw), "only lines or boxes"),
    (lambda draw: squared(draw), "only lines or boxes"),
], ids=["ruled-page", "empty-form-box", "squared-page"])
def test_lines_and_boxes_alone_are_no_digit(drawn, message):
    with pytest.raises(errors.NoDigitFound, match=message):
        normalise.upload_to_pixels(page_with(None, drawn))


def test_two_digits_are_no_single_digit(digit, samples):
    page = Image.new("L", (480, 240), 235)
    for n, at in ((5, (20, 40)), (3, (280, 40))):
        mask = ink_mask(np.asarray(Image.open(samples[n])), 6)
        page.paste(Image.new("L", mask.size, 30), at, mask)
    with pytest.raises(errors.NoDigitFound, match="several"):
        normalise.upload_to_pixels(encode(page))


def test_a_single_straight_stroke_from_edge_to_edge_is_the_digits_own(samples):
    """A 7 cropped to its strokes: its bar runs from edge to edge, like a paper line, and stays."""
    seven = ink_mask(np.asarray(Image.open(samples[7])), 6)
    tight = seven.crop(seven.point(lambda value: 255 if value > 64 else 0).getbbox())
    page = Image.new("L", tight.size, 235)
    page.paste(Image.new("L", tight.size, 30), (0, 0), tight)
    pixels = normalise.upload_to_pixels(encode(page))
    reference = normalise.upload_to_pixels(encode(on_paper(seven, PAGE, DIGIT_AT)))
    assert correlation(pixels, reference) > 0.85


def test_mnist_digits_are_left_as_they_are(mnist):
    """Training normalises MNIST through the same code: its 28x28 digits, under the size the
    clutter is searched in, come out exactly as they went in, even one with a detached speck."""
    ink, smooth, blank = normalise.ink_images(mnist.x_test)
    before = ink.copy()
    assert clutter.clear(ink, smooth, normalise.MASK_THRESHOLD, ~blank) == [None] * len(ink)
    assert (ink == before).all()


def test_a_page_half_in_shadow_is_evened_and_its_digit_found(digit, clean):
    """A shadow over the left half of the page and the digit (the paper there 45% darker)."""
    page = np.asarray(on_paper(ink_mask(digit, 6), PAGE, DIGIT_AT), np.float32)
    light = np.clip(0.55 + 0.45 * (np.arange(PAGE[0]) - 180) / 40, 0.55, 1.0)  # a soft edge at x = 180-220
    shaded = Image.fromarray((page * light[None, :]).round().astype(np.uint8))
    assert correlation(normalise.upload_to_pixels(encode(shaded)), clean) > 0.9


def test_an_evenly_lit_page_is_left_as_it_is(digit):
    stack = np.asarray(on_paper(ink_mask(digit, 6), PAGE, DIGIT_AT))[None]
    assert normalise.even_light(stack) is stack


def test_components_are_eight_connected():
    mask = np.zeros((6, 8), bool)
    mask[0, 0] = mask[1, 1] = mask[2, 2] = True  # one diagonal component
    mask[4:6, 5:8] = True  # a second
    mask[0, 6] = True  # a third, alone
    labels, count = clutter.components(mask)
    assert count == 3
    assert len({labels[0, 0], labels[1, 1], labels[2, 2]}) == 1
    assert labels[4, 5] != labels[0, 0] and labels[0, 6] not in (labels[0, 0], labels[4, 5])
    assert (labels > 0).tolist() == mask.tolist()


def flood_fill_components(mask: np.ndarray) -> np.ndarray:
    """The 8-connected components of a small mask by flood fill, one pixel at a time: the reference."""
    labels, count = np.zeros(mask.shape, int), 0
    for start in zip(*np.nonzero(mask)):
        if labels[start]:
            continue
        count += 1
        labels[start], stack = count, [start]
        while stack:
            row, col = stack.pop()
            for near in ((row + dr, col + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)):
                if 0 <= near[0] < mask.shape[0] and 0 <= near[1] < mask.shape[1] and mask[near] and not labels[near]:
                    labels[near] = count
                    stack.append(near)
    return labels


def test_components_agree_with_a_flood_fill_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(100):
        mask = rng.random((int(rng.integers(1, 25)), int(rng.integers(1, 25)))) < rng.uniform(0.1, 0.7)
        labels, count = clutter.components(mask)
        reference = flood_fill_components(mask)
        assert count == reference.max()
        assert len(set(zip(labels[mask].tolist(), reference[mask].tolist()))) == count, "the same partition"
        assert ((labels > 0) == mask).all()
