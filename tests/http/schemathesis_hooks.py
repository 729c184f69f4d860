"""schemathesis hooks for the API fuzz test (tests/http/test_fuzz.py), loaded by the `hooks` line
of tests/http/schemathesis.toml.

Without them a multipart file part (`type: string, format: binary`) gets schemathesis' own
samples: a blank 1x1 PNG, a schema-valid upload the server rightly refuses (422, no digit found),
or arbitrary bytes (415). With schemathesis' documented APIs - `schemathesis.openapi.media_type`
for the part whose encoding names its media type (`encoding: {file: {contentType: "image/*"}}` in
models.yaml), `schemathesis.openapi.format` for the other binary strings - schema-valid uploads
are real handwritten digits instead: the samples in var/data/ (sample-0.png ... sample-9.png), as
they are and as the variants people send (scaled up, black ink on white paper, colour,
transparent, palette, JPEG), so the fuzzer's schema-valid uploads reach the model. Negative cases
(a missing part, a text field where a file is wanted) are still schemathesis' own.
"""

from __future__ import annotations

import io
from pathlib import Path

import schemathesis
from hypothesis import strategies as st
from PIL import Image, ImageOps

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "var" / "data").glob("sample-*.png"))
assert len(SAMPLES) == 10, "var/data/ must hold sample-0.png ... sample-9.png"


def _encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _variants(digit: Image.Image) -> list[Image.Image]:
    """One MNIST digit (28x28, white on black) as uploads look: as it is, scaled up, black ink on
    white, coloured ink on coloured paper, on a transparent background, and in a palette."""
    large = digit.resize((112, 112), Image.Resampling.BICUBIC)
    paper = ImageOps.invert(large)
    coloured = ImageOps.colorize(large, black=(250, 240, 200), white=(20, 30, 140))
    transparent = Image.new("LA", large.size, 0)
    transparent.putalpha(large)
    return [digit, large, paper, coloured, transparent, coloured.convert("P", palette=Image.Palette.ADAPTIVE)]


def _uploads() -> tuple[list[bytes], list[bytes]]:
    """Real digit uploads: (PNG files, JPEG files)."""
    pngs, jpegs = [], []
    for path in SAMPLES:
        pngs.append(path.read_bytes())
        with Image.open(path) as opened:
            digit = opened.convert("L")
        for variant in _variants(digit):
            pngs.append(_encode(variant, "PNG"))
            if variant.mode in ("L", "RGB"):
                jpegs.append(_encode(variant, "JPEG", quality=90))
    return pngs, jpegs


PNGS, JPEGS = _uploads()
# The parts whose encoding names their media type (`file` of /mnist/classify: `image/*`)...
schemathesis.openapi.media_type("image/png", st.sampled_from(PNGS))
schemathesis.openapi.media_type("image/jpeg", st.sampled_from(JPEGS))
# ... and every other `format: binary` string of models.yaml, which are all image uploads: the
# `files` items of /mnist/classify/batch (see the comment there on why they have no encoding).
schemathesis.openapi.format("binary", st.sampled_from(PNGS + JPEGS))
