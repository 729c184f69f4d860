"""Malformed, hostile and odd-but-valid uploads (the corpus of tests/malformed.py) through the
normalisation: each gets its own answer, the UploadError it must (whose message says what is wrong)
or the pixels of its digit, within a time bound, and the worst of them within a memory bound. Random
damage to files of every common format gets an UploadError or pixels too, never anything else (which
the server would answer with a 500)."""

from __future__ import annotations

import io
import random
import re
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_service import errors, normalise
from tests import malformed

# Pillow warns of the damage it reads past (corrupt EXIF, a malformed MPO, a tag beyond the file).
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")
CASES = malformed.corpus()
# Seconds one upload may take to be answered. Each case takes a few ms; before they were refused
# unread, the 10,000-scan JPEG took 15 s.
TIME_BOUND = 2.0
# MB the resident memory may grow while a heavy case is answered. Refused before they are decoded, the
# worst take under 4 MB (the PNG text Pillow reads, at most 4 MiB now). Decoded or decompressed, the
# least of them took 46 MB (the 10,000-scan JPEG's coefficients; the 1x10,000,000 PNG 84 MB, 80 zTXt
# chunks 57 MB when Pillow kept 64 MiB of text) and the rest hundreds of MB to GBs.
MEMORY_BOUND_MB = 24
STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")  # writing "5" resets the peak (VmHWM) to the current RSS


@pytest.fixture(scope="module")
def references() -> dict[int, np.ndarray]:
    """Each sample digit's pixels as its plain PNG page normalises to."""
    return {digit: normalise.upload_to_pixels(malformed.encode(malformed.page(digit))) for digit in range(10)}


def assert_answer(case: malformed.Case, result, references) -> None:
    """``result`` (pixels or an error, as uploads_to_pixels gives it) is the answer ``case`` must get."""
    if case.error is None:
        assert isinstance(result, np.ndarray), f"{case.name}: {result!r}"
        similarity = np.corrcoef(result.ravel().astype(float), references[case.digit].ravel().astype(float))[0, 1]
        assert similarity > 0.9, f"{case.name} normalises to another image than its digit ({similarity:.2f})"
    else:
        assert type(result) is case.error, f"{case.name}: {type(result).__name__}: {result}"
        assert case.detail in str(result), f"{case.name}: {result}"


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_each_upload_gets_its_answer_in_bounded_time(case, references):
    started = time.perf_counter()
    (result,) = normalise.uploads_to_pixels([case.data])
    elapsed = time.perf_counter() - started
    assert_answer(case, result, references)
    assert elapsed < TIME_BOUND, f"{case.name} took {elapsed:.2f} s"


def test_the_whole_corpus_together_gets_the_same_answers(references):
    """In one call, as a batch request brings them: each still gets its own answer."""
    for case, result in zip(CASES, normalise.uploads_to_pixels([case.data for case in CASES]), strict=True):
        assert_answer(case, result, references)


def kilobytes(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", STATUS.read_text(), re.MULTILINE).group(1))


@pytest.mark.parametrize("case", [case for case in CASES if case.heavy], ids=lambda case: case.name)
def test_the_worst_uploads_are_answered_in_bounded_memory(case):
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        pytest.skip("the peak resident memory cannot be reset here (Linux /proc/self/clear_refs)")
    before = kilobytes("VmRSS")
    normalise.uploads_to_pixels([case.data])
    growth = (kilobytes("VmHWM") - before) / 1024
    assert growth < MEMORY_BOUND_MB, f"{case.name}: the resident memory grew by {growth:.0f} MB"


def declared_size(name: str) -> tuple[int, int] | None:
    found = re.fullmatch(r"[a-z]+-declares-(\d+)x(\d+)", name)  # the first page, the first frame
    return (int(found[1]), int(found[2])) if found else None


def test_the_corpus_is_what_it_says():
    """The hand-made files are what their names say, so the answers above prove something: sizes
    declared as named, frames and pages there, the bombs as large as said."""
    by_name = malformed.by_name
    assert len(CASES) <= 64, "one batch request (at most 64 files) takes them all"
    for case in CASES:
        if size := declared_size(case.name):
            assert Image.open(io.BytesIO(case.data)).size == size, case.name
    assert Image.open(io.BytesIO(by_name("gif-10000-frames").data)).n_frames == 10_000
    assert Image.open(io.BytesIO(by_name("apng-declares-a-billion-frames").data)).n_frames == 1_000_000_000
    pages = Image.open(io.BytesIO(by_name("tiff-3-pages-the-last-declares-60000x60000").data))
    assert pages.n_frames == 3
    pages.seek(2)
    assert pages.size == (60_000, 60_000)
    thin = Image.open(io.BytesIO(by_name("png-1x10000000").data))
    thin.load()  # a valid image: only the server refuses it
    assert thin.size == (1, 10_000_000) and thin.getextrema() == (255, 255)
    assert by_name("jpeg-10000-scans").data.count(b"\xff\xda") > 10_000
    assert Image.open(io.BytesIO(by_name("jpeg-cmyk").data)).mode == "CMYK"
    assert Image.open(io.BytesIO(by_name("png-16-bit-gray").data)).mode.startswith("I;16")
    assert Image.open(io.BytesIO(by_name("tiff-cielab").data)).mode == "LAB"
    assert Image.open(io.BytesIO(by_name("tiff-premultiplied-alpha").data)).mode == "La"
    palette = Image.open(io.BytesIO(by_name("png-palette-with-trns").data))
    assert palette.mode == "P" and "transparency" in palette.info
    for name in ("png-then-html", "html-then-png", "jpeg-html-comment", "gif-html-comment"):
        assert malformed.HTML in by_name(name).data
    text = [body for kind, body in malformed.png_chunks(by_name("png-ztxt-256mb").data) if kind == b"zTXt"][0]
    assert decompressed_size(text.split(b"\x00", 1)[1][1:]) == 256 << 20


def decompressed_size(stream: bytes) -> int:
    """What a zlib stream decompresses to, in bytes, counted 16 MB at a time."""
    decompressor, size = zlib.decompressobj(), 0
    while stream:
        size += len(decompressor.decompress(stream, 16 << 20))
        stream = decompressor.unconsumed_tail
    return size + len(decompressor.flush())


# --- random damage -----------------------------------------------------------------------------------

MUTATIONS = 1000
# Files of the formats Pillow reads, of one digit page: each is damaged at random MUTATIONS / len times.
FORMATS = [("PNG", "L", {}), ("PNG", "P", {}), ("JPEG", "RGB", {"quality": 90}), ("JPEG", "L", {"progressive": True}),
           ("GIF", "L", {}), ("TIFF", "L", {}), ("TIFF", "RGB", {"compression": "tiff_lzw"}),
           ("TIFF", "L", {"compression": "tiff_adobe_deflate"}), ("TIFF", "RGB", {"compression": "jpeg"}),
           ("TIFF", "L", {"compression": "packbits"}), ("WEBP", "RGB", {"quality": 80}),
           ("WEBP", "L", {"lossless": True}), ("BMP", "L", {}), ("ICO", "L", {}),
           ("TGA", "L", {"compression": "tga_rle"}), ("PPM", "L", {}), ("PCX", "L", {}), ("JPEG2000", "L", {}),
           ("DDS", "RGB", {}), ("AVIF", "RGB", {}), ("XBM", "1", {}), ("SGI", "L", {})]
EXTREMES = [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"\x00\x00\x80\x00"]


def damaged(data: bytes, rng: random.Random) -> bytes:
    """``data`` with one to 16 kinds of damage: bytes replaced, 32-bit fields set to extremes, cut,
    bytes inserted or removed."""
    out = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 4, 16])):
        kind = rng.random()
        if kind < 0.4 and out:
            out[rng.randrange(len(out))] = rng.randrange(256)
        elif kind < 0.6 and len(out) > 4:
            at = rng.randrange(len(out) - 4)
            out[at : at + 4] = rng.choice(EXTREMES)
        elif kind < 0.75:
            del out[rng.randrange(len(out) + 1) :]
        elif kind < 0.9:
            at = rng.randrange(len(out) + 1)
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        elif out:
            at = rng.randrange(len(out))
            del out[at : at + rng.randrange(1, 64)]
    return bytes(out)


@pytest.fixture(scope="module")
def intact_files() -> list[tuple[str, bytes]]:
    page, files = malformed.page(3), []
    for fmt, mode, params in FORMATS:
        try:
            files.append((f"{fmt} {mode} {params}", malformed.encode(page.convert(mode), fmt, **params)))
        except (OSError, KeyError, ValueError):  # a format this Pillow cannot write
            continue
    assert len(files) >= 15
    return files


def test_randomly_damaged_files_get_an_upload_error_or_pixels(intact_files):
    """Seeded: each failure names the damage to reproduce it. What Pillow raises on damaged files
    (OSError, ValueError, RuntimeError, NotImplementedError, from opening, decoding or reading EXIF)
    must come out as an UploadError, never as another error (a 500)."""
    rng = random.Random(2024)
    for number in range(MUTATIONS):
        name, data = intact_files[number % len(intact_files)]
        upload = damaged(data, rng)
        started = time.perf_counter()
        (result,) = normalise.uploads_to_pixels([upload])
        elapsed = time.perf_counter() - started
        assert isinstance(result, (np.ndarray, errors.UploadError)), (
            f"damage {number} of {name} ({zlib.crc32(upload):08x}): {type(result).__name__}: {result}")
        assert elapsed < TIME_BOUND, f"damage {number} of {name} took {elapsed:.2f} s"
