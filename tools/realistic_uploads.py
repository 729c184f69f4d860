"""Realistic uploads made from MNIST *test* digits and system fonts, and the model's accuracy on them.

    python -m tools.realistic_uploads [--data DIR] [--model PATH] [--per-style N] [--save DIR]

Each style imitates what people really send (see STYLES). Every image goes through the same path
as an HTTP upload (encoded file bytes -> normalise.uploads_to_pixels -> the classifier), and the
script prints the accuracy per style. The handwritten styles use the MNIST test split only, which
training never sees; the printed style uses fonts found on this machine (FONT_DIRS). ``--save``
writes the images, to look at them.
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
