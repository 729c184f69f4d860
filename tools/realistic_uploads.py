"""Realistic uploads made from MNIST *test* digits and system fonts, and the model's accuracy on them.

    python -m tools.realistic_uploads [--data DIR] [--model PATH] [--per-style N] [--save DIR]

Each style imitates what people really send (see STYLES), a clean digit or a digit among clutter
(ruled and squared paper, form and comb boxes, specks, a stray mark, a shadow). Every image goes
through the same path as an HTTP upload (encoded file bytes -> normalise.uploads_to_pixels -> the
classifier), and the script prints the accuracy per style. The handwritten styles use the MNIST
test split only, which training never sees; the printed style uses fonts found on this machine
(FONT_DIRS). ``--save`` writes the images, to look at them.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIRS = [Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path("/Library/Fonts"),
             Path("/System/Library/Fonts"), Path("C:/Windows/Fonts")]
# Fonts whose digits are not ordinary printed digits.
SKIP_FONTS = ("Math", "Symbol", "Emoji", "Dingbat")


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    """An image as the bytes of a file of format ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def stroke_mask(digit: np.ndarray, height: int, angle: float = 0.0) -> Image.Image:
    """An MNIST digit (28x28, white on black) scaled so the digit is about ``height`` px tall."""
    mask = Image.fromarray(digit).resize((height * 28 // 20,) * 2, Image.Resampling.BICUBIC)
    if angle:
        mask = mask.rotate(angle, Image.Resampling.BICUBIC, expand=True)
    return mask


def paper(size: tuple[int, int], colour, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Paper of a colour (one value: gray, three: RGB), lit unevenly (a smooth ramp across it),
    with sensor noise: a float32 (height, width, channels) array."""
    width, height = size
    direction = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(direction) * np.arange(width, dtype=np.float32)[None, :] / width
            + np.sin(direction) * np.arange(height, dtype=np.float32)[:, None] / height)
    light = 1 - 0.05 * (ramp - ramp.min())
    sheet = np.asarray(colour, np.float32)[None, None, :] * light[..., None]
    return sheet + rng.standard_normal(sheet.shape, dtype=np.float32) * np.float32(noise)


def ink_on(sheet: np.ndarray, mask: Image.Image, ink, at: tuple[int, int]) -> np.ndarray:
    """Lay ink of a colour on the sheet through a mask (0-255) placed with its top-left at ``at``."""
    left, top = at
    alpha = np.asarray(mask, np.float32)[: sheet.shape[0] - top, : sheet.shape[1] - left, None] / 255
    region = sheet[top : top + alpha.shape[0], left : left + alpha.shape[1]]
    region[:] = region * (1 - alpha) + np.asarray(ink, np.float32) * alpha
    return sheet


def to_image(sheet: np.ndarray) -> Image.Image:
    pixels = np.clip(sheet, 0, 255).round().astype(np.uint8)
    return Image.fromarray(pixels[..., 0], "L") if pixels.shape[-1] == 1 else Image.fromarray(pixels, "RGB")


def paper_scan_jpeg(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A pen digit scanned from white paper: grayscale JPEG, dark ink, noise, a little blur."""
    height = int(rng.integers(60, 200))
    mask = stroke_mask(digit, height)
    size = (int(mask.width * rng.uniform(1.3, 2.5)), int(mask.height * rng.uniform(1.3, 2.5)))
    at = (int(rng.integers(0, size[0] - mask.width)), int(rng.integers(0, size[1] - mask.height)))
    level = rng.uniform(200, 245)
    sheet = ink_on(paper(size, (level,), rng, rng.uniform(2, 8)), mask, (rng.uniform(20, 70),), at)
    image = to_image(sheet).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    return encode(image, "JPEG", quality=int(rng.integers(50, 90)))


def canvas_png(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """An HTML canvas export: RGBA, background fully transparent with RGB 0, opaque strokes."""
    side = int(rng.choice([200, 280, 400]))
    mask = stroke_mask(digit, int(side * rng.uniform(0.45, 0.7)))
    ink = [(0, 0, 0), (255, 255, 255), (30, 60, 200), (200, 30, 30)][int(rng.integers(4))]
    rgba = np.zeros((side, side, 4), np.uint8)
    left, top = (int(rng.integers(0, side - mask.width)), int(rng.integers(0, side - mask.height)))
    alpha = np.asarray(mask)
    rgba[top : top + alpha.shape[0], left : left + alpha.shape[1], :3] = np.where(alpha[..., None] > 0, ink, 0)
    rgba[top : top + alpha.shape[0], left : left + alpha.shape[1], 3] = alpha
    return encode(Image.fromarray(rgba, "RGBA"), "PNG")


def small_on_page(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A small digit anywhere on a large page, near an edge as often as not; PNG or JPEG."""
    size = (int(rng.integers(600, 1400)), int(rng.integers(600, 1400)))
    mask = stroke_mask(digit, int(rng.integers(28, 70)))
    near_edge = rng.random() < 0.5
    margin = 2 if near_edge else 0
    left = int(rng.choice([margin, size[0] - mask.width - margin]) if near_edge
               else rng.integers(0, size[0] - mask.width))
    top = int(rng.integers(0, size[1] - mask.height))
    sheet = ink_on(paper(size, (rng.uniform(215, 250),), rng, rng.uniform(1, 5)), mask,
                   (rng.uniform(10, 60),), (left, top))
    image = to_image(sheet)
    return encode(image, "PNG") if rng.random() < 0.5 else encode(image, "JPEG", quality=85)


def colour_photo_jpeg(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A phone photo: coloured ink on tinted paper, tilted, blurred, noisy, JPEG, stored sideways
    with an EXIF orientation tag half of the time."""
    paper_colour = rng.uniform(170, 250, 3)
    ink = [(20, 40, 160), (160, 20, 20), (20, 110, 40), (30, 30, 30)][int(rng.integers(4))]
    mask = stroke_mask(digit, int(rng.integers(80, 240)), angle=float(rng.uniform(-8, 8)))
    size = (int(mask.width * rng.uniform(1.4, 2.6)), int(mask.height * rng.uniform(1.4, 2.6)))
    at = (int(rng.integers(0, size[0] - mask.width)), int(rng.integers(0, size[1] - mask.height)))
    sheet = ink_on(paper(size, paper_colour, rng, rng.uniform(3, 10)), mask, ink, at)
    image = to_image(sheet).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.8)))
    if rng.random() < 0.5:
        exif = Image.Exif()
        exif[0x0112] = 6  # stored rotated; "rotate 90 degrees clockwise to display"
        return encode(image.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=int(rng.integers(60, 92)), exif=exif)
    return encode(image, "JPEG", quality=int(rng.integers(60, 92)))


# The clutter styles: a digit among what surrounds it on real paper. Pale printed rulings, a dark pen.
PEN_INKS = [(20, 30, 120), (25, 25, 30), (60, 60, 70), (15, 60, 150)]  # blue, black, pencil gray, royal blue
RULINGS = [(150, 185, 235), (170, 200, 245), (140, 170, 215), (175, 175, 180), (150, 205, 170)]  # blues, gray, green


def lines_mask(size: tuple[int, int], rng: np.random.Generator, spacing: float, angle: float, width: int,
               vertical: bool = False) -> Image.Image:
    """Parallel straight lines ``spacing`` px apart across a whole sheet, tilted by ``angle`` degrees,
    ``width`` px wide, at a random phase: horizontal (or vertical) before the tilt."""
    width_px, height_px = size
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    slope = np.tan(np.radians(angle))
    span = width_px if vertical else height_px
    reach = height_px if vertical else width_px
    position = rng.uniform(0, spacing) - abs(slope) * reach
    while position < span + abs(slope) * reach:
        if vertical:
            draw.line([(position, 0), (position + slope * reach, reach)], fill=255, width=width)
        else:
            draw.line([(0, position), (reach, position + slope * reach)], fill=255, width=width)
        position += spacing
    return mask


def page_with_digit(digit: np.ndarray, rng: np.random.Generator, height: int, scale: tuple[float, float]):
    """A digit's stroke mask, a tinted sheet around it (its sides ``scale`` times the digit's) and
    where the digit goes on it."""
    mask = stroke_mask(digit, height, angle=float(rng.uniform(-5, 5)))
    size = (int(mask.width * rng.uniform(*scale)), int(mask.height * rng.uniform(*scale)))
    at = (int(rng.integers(0, size[0] - mask.width)), int(rng.integers(0, size[1] - mask.height)))
    tint = rng.uniform(225, 252) - rng.uniform(0, 12, 3)
    return mask, size, at, paper(size, tint, rng, rng.uniform(2, 6))


def photo(sheet: np.ndarray, rng: np.random.Generator) -> bytes:
    """A sheet as a phone or a scanner gives it: a little blur, JPEG (PNG a quarter of the time)."""
    image = to_image(sheet).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    if rng.random() < 0.25:
        return encode(image, "PNG")
    return encode(image, "JPEG", quality=int(rng.integers(65, 92)))


def ruled_paper(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A digit on ruled notebook paper: pale lines 0.45-0.9 digit heights apart, tilted up to 2
    degrees, the digit crossing them as it falls; a red margin line two times in three."""
    height = int(rng.integers(50, 160))
    mask, size, at, sheet = page_with_digit(digit, rng, height, (1.6, 3.2))
    angle = float(rng.uniform(-2, 2))
    ruling = lines_mask(size, rng, height * rng.uniform(0.45, 0.9), angle, int(rng.integers(1, 4)))
    sheet = ink_on(sheet, ruling, RULINGS[int(rng.integers(len(RULINGS)))], (0, 0))
    if rng.random() < 2 / 3:  # the margin: left or right of the digit, never through it
        margin = Image.new("L", size, 0)
        gap = int(rng.integers(3, 12))
        x = (int(rng.integers(0, max(1, at[0] - gap))) if at[0] > size[0] - at[0] - mask.width
             else int(rng.integers(min(size[0] - 1, at[0] + mask.width + gap), size[0])))
        ImageDraw.Draw(margin).line([(x, 0), (x + np.tan(np.radians(angle)) * size[1], size[1])], fill=255,
                                    width=int(rng.integers(1, 4)))
        sheet = ink_on(sheet, margin, (rng.uniform(190, 235), rng.uniform(40, 110), rng.uniform(60, 120)), (0, 0))
    return photo(ink_on(sheet, mask, PEN_INKS[int(rng.integers(len(PEN_INKS)))], at), rng)


def squared_paper(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A digit on squared (graph) paper: a pale grid 0.2-0.5 digit heights a square, tilted up to 2
    degrees."""
    height = int(rng.integers(50, 160))
    mask, size, at, sheet = page_with_digit(digit, rng, height, (1.5, 3.0))
    angle, spacing, width = float(rng.uniform(-2, 2)), height * rng.uniform(0.2, 0.5), int(rng.integers(1, 3))
    grid = np.maximum(np.asarray(lines_mask(size, rng, spacing, angle, width)),
                      np.asarray(lines_mask(size, rng, spacing, angle, width, vertical=True)))
    sheet = ink_on(sheet, Image.fromarray(grid), RULINGS[int(rng.integers(len(RULINGS)))], (0, 0))
    return photo(ink_on(sheet, mask, PEN_INKS[int(rng.integers(len(PEN_INKS)))], at), rng)


def tight_digit(digit: np.ndarray, rng: np.random.Generator, height: int) -> Image.Image:
    """A digit's stroke mask (see stroke_mask, tilted up to 5 degrees) cropped to its strokes."""
    mask = stroke_mask(digit, height, angle=float(rng.uniform(-5, 5)))
    return mask.crop(mask.point(lambda value: 255 if value > 32 else 0).getbbox())


def boxed(digit: np.ndarray, rng: np.random.Generator, columns: int) -> bytes:
    """A digit in one of ``columns`` printed boxes in a row (a single box, or comb boxes sharing their
    walls), the box 1.15-1.8 times the digit's size, the digit anywhere inside it touching no wall,
    some page around the row, the other boxes empty."""
    mask = tight_digit(digit, rng, int(rng.integers(50, 150)))
    inner = (int(max(mask.size) * rng.uniform(1.15, 1.8)) + 6, int(mask.height * rng.uniform(1.15, 1.6)) + 6)
    row = (inner[0] * columns, inner[1])
    size = (int(row[0] * rng.uniform(1.08, 1.6)), int(row[1] * rng.uniform(1.2, 2.0)))
    corner = (int(rng.integers(0, size[0] - row[0])), int(rng.integers(0, size[1] - row[1])))
    frame = Image.new("L", size, 0)
    draw, wall = ImageDraw.Draw(frame), int(rng.integers(1, 4))
    comb = columns > 1 and rng.random() < 0.5  # ticks rising from a base line, not closed boxes
    for column in range(columns):
        left = corner[0] + column * inner[0]
        if comb:
            draw.line([(left, corner[1] + inner[1] * 0.6), (left, corner[1] + inner[1])], fill=255, width=wall)
        else:
            draw.rectangle((left, corner[1], left + inner[0], corner[1] + inner[1]), outline=255, width=wall)
    if comb:
        draw.line([(corner[0], corner[1] + inner[1]), (corner[0] + row[0], corner[1] + inner[1])], fill=255, width=wall)
        draw.line([(corner[0] + row[0], corner[1] + inner[1] * 0.6), (corner[0] + row[0], corner[1] + inner[1])],
                  fill=255, width=wall)
    sheet = paper(size, rng.uniform(225, 252) - rng.uniform(0, 12, 3), rng, rng.uniform(2, 6))
    sheet = ink_on(sheet, frame, [(20, 20, 20), (70, 70, 70), (30, 50, 120), (120, 120, 120)][int(rng.integers(4))],
                   (0, 0))
    left = corner[0] + int(rng.integers(columns)) * inner[0]
    at = (left + int(rng.integers(wall + 2, inner[0] - mask.width - 1)),
          corner[1] + int(rng.integers(wall + 2, inner[1] - mask.height - 1)))
    return photo(ink_on(sheet, mask, PEN_INKS[int(rng.integers(len(PEN_INKS)))], at), rng)


def form_box(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A digit written in a single printed form box (see boxed)."""
    return boxed(digit, rng, 1)


def comb_boxes(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A digit in one of a row of 3-8 comb boxes (see boxed: closed boxes sharing their walls, or
    ticks rising from a base line), the others empty."""
    return boxed(digit, rng, int(rng.integers(3, 9)))


def blob(radius: float, rng: np.random.Generator) -> Image.Image:
    """An irregular ink blot or dust speck about ``radius`` px across, as a mask."""
    side = int(2 * radius + 4)
    yy, xx = np.mgrid[:side, :side] - (side - 1) / 2
    angle = np.arctan2(yy, xx)
    wobble = 1 + 0.25 * np.sin(3 * angle + rng.uniform(0, 6)) + 0.15 * np.sin(5 * angle + rng.uniform(0, 6))
    edge = radius * wobble - np.hypot(yy, xx)
    return Image.fromarray((np.clip(edge + 0.5, 0, 1) * 255).astype(np.uint8))


def away_from(box: tuple[int, int, int, int], size: tuple[int, int], extent: tuple[int, int], gap: float,
              rng: np.random.Generator) -> tuple[int, int] | None:
    """A place for something of ``extent`` on a sheet of ``size``, at least ``gap`` px from ``box``
    (left, top, right, bottom); None if none was found in 50 tries."""
    for _ in range(50):
        x, y = int(rng.integers(0, size[0] - extent[0])), int(rng.integers(0, size[1] - extent[1]))
        if (x + extent[0] + gap < box[0] or x > box[2] + gap or y + extent[1] + gap < box[1] or y > box[3] + gap):
            return x, y
    return None


def digit_with_room(digit: np.ndarray, rng: np.random.Generator, widths: tuple[float, float],
                    heights: tuple[float, float]):
    """A digit 60-180 px tall in a pen's ink on a tinted sheet ``widths`` times its width (and half
    its height more) and ``heights`` times its height: its height, the sheet's size, the sheet, the
    ink and the digit's box (left, top, right, bottom)."""
    height = int(rng.integers(60, 180))
    mask = tight_digit(digit, rng, height)
    size = (int(mask.width * rng.uniform(*widths)) + height // 2, int(mask.height * rng.uniform(*heights)))
    at = (int(rng.integers(0, size[0] - mask.width)), int(rng.integers(0, size[1] - mask.height)))
    sheet = paper(size, rng.uniform(215, 250) - rng.uniform(0, 10, 3), rng, rng.uniform(2, 6))
    ink = PEN_INKS[int(rng.integers(len(PEN_INKS)))]
    return height, size, ink_on(sheet, mask, ink, at), ink, (at[0], at[1], at[0] + mask.width, at[1] + mask.height)


def specks(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A scan with dirt on the glass: 5-40 dust specks anywhere away from the strokes and 1-3 small
    ink blots away from the digit."""
    height, size, sheet, ink, digit_box = digit_with_room(digit, rng, (1.8, 3.5), (1.5, 2.8))
    dirt = [(blob(rng.uniform(0.6, 2.0) * height / 100, rng), (rng.uniform(10, 90),) * 3, 0.0)
            for _ in range(int(rng.integers(5, 41)))]
    dirt += [(blob(rng.uniform(3, 7) * height / 100, rng), ink, height * 0.15) for _ in range(int(rng.integers(1, 4)))]
    for spot, colour, gap in dirt:
        place = away_from(digit_box, size, spot.size, gap, rng)
        if place is not None:
            sheet = ink_on(sheet, spot, colour, place)
    return photo(sheet, rng)


def stray_mark(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A digit with a stray pen mark beside it: a short stroke or tick 0.15-0.4 digit heights long,
    in the same ink, 0.15-0.5 digit heights from the digit."""
    height, size, sheet, ink, digit_box = digit_with_room(digit, rng, (2.0, 3.5), (1.6, 2.6))
    length = height * rng.uniform(0.15, 0.4)
    side = int(length) + 8
    mark = Image.new("L", (side, side), 0)
    angle = rng.uniform(0, np.pi)
    ends = [(side / 2 - np.cos(angle) * length / 2, side / 2 - np.sin(angle) * length / 2),
            (side / 2 + np.cos(angle) * length / 2, side / 2 + np.sin(angle) * length / 2)]
    ImageDraw.Draw(mark).line(ends, fill=255, width=max(2, int(height * rng.uniform(0.04, 0.08))))
    place = away_from(digit_box, size, mark.size, height * rng.uniform(0.15, 0.5), rng)
    if place is not None:
        sheet = ink_on(sheet, mark, ink, place)
    return photo(sheet, rng)


def shadow(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A phone photo with a shadow across the page: one side of a soft-edged line through the sheet
    (through the digit as often as not) 25-50% darker."""
    height = int(rng.integers(60, 200))
    mask, size, at, sheet = page_with_digit(digit, rng, height, (1.5, 2.8))
    sheet = ink_on(sheet, mask, PEN_INKS[int(rng.integers(len(PEN_INKS)))], at)
    direction = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[: size[1], : size[0]].astype(np.float32)
    through = (rng.uniform(0.2, 0.8) * size[0], rng.uniform(0.2, 0.8) * size[1])
    distance = np.cos(direction) * (xx - through[0]) + np.sin(direction) * (yy - through[1])
    softness = max(size) * rng.uniform(0.02, 0.15)
    shade = 1 - rng.uniform(0.25, 0.5) / (1 + np.exp(-distance / softness))
    return photo(sheet * shade[..., None], rng)


def system_fonts() -> list[Path]:
    """TrueType/OpenType fonts on this machine whose digits are ordinary printed digits."""
    fonts = {
        path for folder in FONT_DIRS if folder.is_dir()
        for path in folder.rglob("*") if path.suffix.lower() in (".ttf", ".otf")
        and not any(word in path.name for word in SKIP_FONTS)
    }
    return sorted(fonts)


def printed_font(digit_label: int, font: Path, rng: np.random.Generator) -> bytes:
    """A printed digit in a system font, dark on white, at a random size and place; PNG."""
    size = int(rng.integers(24, 160))
    typeface = ImageFont.truetype(str(font), size)
    left, top, right, bottom = typeface.getbbox(str(digit_label))
    width, height = right - left, bottom - top
    canvas = (int(width * rng.uniform(1.3, 3)) + 4, int(height * rng.uniform(1.3, 3)) + 4)
    image = Image.new("L", canvas, int(rng.uniform(225, 255)))
    at = (int(rng.integers(0, canvas[0] - width)) - left, int(rng.integers(0, canvas[1] - height)) - top)
    ImageDraw.Draw(image).text(at, str(digit_label), fill=int(rng.uniform(0, 60)), font=typeface)
    return encode(image, "PNG")


# style name -> function of (28x28 MNIST test digit, rng) -> encoded file bytes
STYLES: dict[str, Callable[[np.ndarray, np.random.Generator], bytes]] = {
    "paper-scan-jpeg": paper_scan_jpeg,
    "canvas-png": canvas_png,
    "small-on-page": small_on_page,
    "colour-photo-jpeg": colour_photo_jpeg,
    "ruled-paper": ruled_paper,
    "squared-paper": squared_paper,
    "form-box": form_box,
    "comb-boxes": comb_boxes,
    "specks": specks,
    "stray-mark": stray_mark,
    "shadow": shadow,
}
PRINTED = "printed-font"


def make_uploads(x_test: np.ndarray, y_test: np.ndarray, per_style: int, seed: int = 2024):
    """Yield (style, label, file bytes): ``per_style`` of each handwritten style, from test digits
    chosen at random (a different draw per style), and ``per_style`` printed digits cycling
    through the system fonts."""
    rng = np.random.default_rng(seed)
    for style, render in STYLES.items():
        for index in rng.choice(len(x_test), per_style, replace=False):
            yield style, int(y_test[index]), render(x_test[index], rng)
    fonts = system_fonts()
    if not fonts:
        raise RuntimeError(f"no fonts found in {[str(f) for f in FONT_DIRS]}: "
                           "install fonts-dejavu-core fonts-liberation")
    for number in range(per_style):
        label = number % 10
        yield PRINTED, label, printed_font(label, fonts[(number // 10) % len(fonts)], rng)


def evaluate(classify_pixels, x_test, y_test, per_style: int, save: Path | None = None) -> dict[str, float]:
    """Accuracy per style of ``classify_pixels`` (a stack of 28x28 uint8 -> predicted digits)."""
    from mnist_service import normalise
    from mnist_service.errors import NoDigitFound

    uploads, labels, styles = [], [], []
    for number, (style, label, data) in enumerate(make_uploads(x_test, y_test, per_style)):
        if save is not None:
            kind = Image.open(io.BytesIO(data)).format.lower()
            (save / f"{style}-{number:05d}-{label}.{kind}").write_bytes(data)
        uploads.append(data)
        labels.append(label)
        styles.append(style)
    pixels = []
    for start in range(0, len(uploads), 256):  # normalised together, 256 at a time (memory)
        for result in normalise.uploads_to_pixels(uploads[start : start + 256]):
            if isinstance(result, NoDigitFound):
                result = np.zeros((28, 28), np.uint8)  # counts as wrong unless the model says so
            elif isinstance(result, Exception):
                raise result
            pixels.append(result)
    predicted = classify_pixels(np.stack(pixels))
    correct = predicted == np.asarray(labels)
    styles = np.asarray(styles)
    return {style: float(correct[styles == style].mean()) for style in dict.fromkeys(styles)}


def main(argv: list[str] | None = None) -> int:
    from mnist_service import mnist_data
    from mnist_service.classifier import Classifier
    from mnist_service.training import KINDS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="folder of the MNIST IDX .gz files (as for train_mnist.py)")
    parser.add_argument("--model", type=Path, default=KINDS["cnn"].default_out,
                        help="the model file (default var/data/mnist-cnn.keras)")
    parser.add_argument("--per-style", type=int, default=1000)
    parser.add_argument("--save", type=Path, help="also write the images to this folder")
    args = parser.parse_args(argv)
    data = mnist_data.load_mnist(args.data)
    classifier = Classifier.load(args.model)
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
    accuracy = evaluate(lambda batch: classifier.predict(batch).argmax(axis=1), data.x_test, data.y_test,
                        args.per_style, args.save)
    print(f"{'style':<20} accuracy ({args.per_style} images each, model {args.model})")
    for style, value in accuracy.items():
        print(f"{style:<20} {value:.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
