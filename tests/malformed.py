"""A corpus of malformed, hostile and odd-but-valid uploads, each with the answer it must get.

Every file is built here, in memory, from the sample digits (var/data/sample-*.png) with Pillow,
NumPy and plain bytes: no binary file is committed. Hand-made damage is done the way an attacker or
a broken client would do it: files cut in the middle of their data, bytes flipped, checksums
broken, headers edited to declare sizes the data never had (with their checksums fixed, so only the
size is wrong), text chunks that decompress to hundreds of MB, animations of 10,000 frames, and
images glued to HTML.

Each :class:`Case` names the :mod:`mnist_service.errors` upload error it must get (so its HTTP
status), with words its message must say; or, for an odd but valid image of a real digit, no error
and the digit (:data:`SAMPLE` says which sample it shows). ``heavy`` marks the ones that would cost
hundreds of MB or seconds if they were decoded; the tests bound their memory as well as their time.
Used by tests/unit/test_malformed.py (the normalisation) and tests/http/test_malformed.py (the
server).
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mnist_service import errors

SAMPLES = Path(__file__).resolve().parent.parent / "var" / "data"
HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>\n"

# The words each kind of answer's message says (the Case may ask for more).
CORRUPT = "truncated or corrupt"
NOT_AN_IMAGE = "not an image format"
OVER_LIMIT = "over the limit of"
TOO_THIN = "too thin to hold a digit"
NO_DIGIT = "no digit found"
METADATA = "metadata"


@dataclass(frozen=True)
class Case:
    """One upload and the answer it must get: ``error`` (an UploadError subclass, whose message says
    ``detail``), or None and the pixels of ``digit``."""

    name: str
    data: bytes
    error: type[errors.UploadError] | None
    detail: str = ""
    digit: int | None = None
    heavy: bool = False
    why: str = ""

    @property
    def status(self) -> int:
        return self.error.status if self.error else 200

    def __repr__(self) -> str:
        return f"Case({self.name}: {len(self.data)} bytes -> {self.status})"


# --- the digits the valid cases show ---------------------------------------------------------------


def sample(digit: int) -> np.ndarray:
    """The sample digit (28x28, white on black, as MNIST stores it)."""
    return np.asarray(Image.open(SAMPLES / f"sample-{digit}.png"))


def page(digit: int, scale: int = 4, paper: int = 235, ink: int = 30) -> Image.Image:
    """The sample digit in dark ink on light paper, ``scale`` times MNIST's size ("L")."""
    mask = Image.fromarray(sample(digit)).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    sheet = Image.new("L", mask.size, paper)
    sheet.paste(Image.new("L", mask.size, ink), (0, 0), mask)
    return sheet


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def flipped(data: bytes, at: int, count: int = 8, step: int = 1) -> bytes:
    """``data`` with ``count`` bytes from ``at`` (every ``step``-th) inverted."""
    out = bytearray(data)
    for n in range(at, at + count * step, step):
        out[n] ^= 0xFF
    return bytes(out)


# --- PNG ---------------------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (type, body) of each chunk of a PNG."""
    chunks, position = [], len(PNG_SIGNATURE)
    while position < len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        chunks.append((kind, data[position + 8 : position + 8 + length]))
        position += 12 + length
    return chunks


def png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return PNG_SIGNATURE + b"".join(png_chunk(kind, body) for kind, body in chunks)


def png_inserted(data: bytes, extra: list[tuple[bytes, bytes]], before: bytes = b"IDAT") -> bytes:
    """A PNG with more chunks put before its first chunk of type ``before``."""
    chunks = png_chunks(data)
    at = next(n for n, (kind, _) in enumerate(chunks) if kind == before)
    return png(chunks[:at] + extra + chunks[at:])


def png_with_bad_crc(data: bytes, kind: bytes) -> bytes:
    """A PNG whose first chunk of a type has a wrong CRC."""
    chunks = png_chunks(data)
    at = next(n for n, (found, _) in enumerate(chunks) if found == kind)
    return (PNG_SIGNATURE + b"".join(png_chunk(*chunk) for chunk in chunks[:at])
            + png_chunk(kind, chunks[at][1], zlib.crc32(kind + chunks[at][1]) ^ 1)
            + b"".join(png_chunk(*chunk) for chunk in chunks[at + 1 :]))


def png_resized_header(data: bytes, width: int, height: int) -> bytes:
    """A PNG whose IHDR declares another size (its CRC fixed), the image data left as it was."""
    chunks = png_chunks(data)
    kind, body = chunks[0]
    chunks[0] = kind, struct.pack(">II", width, height) + body[8:]
    return png(chunks)


def zlib_of_zeros(size: int) -> bytes:
    """A zlib stream that decompresses to ``size`` zero bytes (at about 1000:1)."""
    compressor, block = zlib.compressobj(9), bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(size >> 20)]
    parts.append(compressor.compress(bytes(size & ((1 << 20) - 1))))
    return b"".join(parts) + compressor.flush()


def png_of_rows(width: int, height: int, row: bytes) -> bytes:
    """A grayscale 8-bit PNG of ``height`` identical rows (``row``: ``width`` bytes), compressed as it
    goes, so a PNG of millions of rows is built without holding them."""
    compressor, line = zlib.compressobj(9), b"\x00" + row
    rows_per_part = max(1, (1 << 20) // len(line))
    parts = []
    for start in range(0, height, rows_per_part):
        parts.append(compressor.compress(line * min(rows_per_part, height - start)))
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return png([(b"IHDR", ihdr), (b"IDAT", b"".join(parts)), (b"IEND", b"")])


def apng_of_many_frames(digit: int, frames: int) -> bytes:
    """An APNG whose default image (its first frame) is the digit and whose animation control chunk
    declares ``frames`` frames; two are there, the rest never come."""
    first = encode(page(digit))
    chunks = png_chunks(first)
    width, height = struct.unpack(">II", chunks[0][1][:8])
    actl = (b"acTL", struct.pack(">II", frames, 0))
    fctl = (b"fcTL", struct.pack(">IIIIIHHBB", 0, width, height, 0, 0, 1, 10, 0, 0))
    idat = [body for kind, body in chunks if kind == b"IDAT"]
    later = [(b"fcTL", struct.pack(">IIIIIHHBB", 1, width, height, 0, 0, 1, 10, 0, 0)),
             (b"fdAT", struct.pack(">I", 2) + b"".join(idat))]
    at = next(n for n, (kind, _) in enumerate(chunks) if kind == b"IDAT")
    return png(chunks[:1] + [actl] + chunks[1:at] + [fctl] + chunks[at:-1] + later + chunks[-1:])


# --- JPEG --------------------------------------------------------------------------------------------


def jpeg_segment_at(data: bytes, marker: int) -> int:
    """The offset of the first segment with this marker (0xC0 for SOF0, ...) of a JPEG's header."""
    position = 2
    while position < len(data):
        assert data[position] == 0xFF, "not at a marker"
        kind = data[position + 1]
        if kind == marker:
            return position
        position += 2 + struct.unpack_from(">H", data, position + 2)[0]
    raise ValueError(f"no segment 0x{marker:02X}")


def jpeg_resized_header(data: bytes, width: int, height: int) -> bytes:
    """A JPEG whose frame header (SOF0) declares another size; the scan left as it was."""
    at = jpeg_segment_at(data, 0xC0)
    return data[: at + 5] + struct.pack(">HH", height, width) + data[at + 9 :]


def jpeg_with_segment(data: bytes, marker: int, body: bytes) -> bytes:
    """A JPEG with one more segment (APPn, COM, ...) right after its SOI."""
    return data[:2] + bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body + data[2:]


def jpeg_scan_start(data: bytes) -> int:
    """The offset of the entropy-coded data after the first SOS."""
    at = jpeg_segment_at(data, 0xDA)
    return at + 2 + struct.unpack_from(">H", data, at + 2)[0]


def jpeg_with_scans(image: Image.Image, scans: int) -> bytes:
    """A progressive JPEG of the image with more scans before its end, each a few bytes: an AC scan
    of the first component whose data are end-of-band runs (a Huffman table of that one symbol)."""
    data = encode(image, "JPEG", progressive=True, quality=75)
    table = b"\xff\xc4" + struct.pack(">H", 2 + 1 + 16 + 2) + b"\x10" + bytes([1, 1] + [0] * 14) + b"\xe0\x00"
    scan = b"\xff\xda" + struct.pack(">H", 8) + b"\x01\x01\x00\x01\x3f\x00" + b"\x7f\xff\x00\xbf\xff\x00\xdf\xff\x00"
    return data[:-2] + table + scan * scans + data[-2:]


# --- GIF ---------------------------------------------------------------------------------------------

# One frame of 1x1 px: a graphic control extension (100 ms), an image descriptor, and LZW data of
# 8-bit codes (clear, pixel 0, end: three 9-bit codes in four bytes).
GIF_TINY_FRAME = (b"\x21\xf9\x04\x00\x0a\x00\x00\x00" + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
                  + b"\x08\x04" + struct.pack("<I", 256 | 257 << 18) + b"\x00")


def gif_image_descriptor_at(data: bytes) -> int:
    """The offset of the first image descriptor (0x2C) of a GIF."""
    flags = data[10]
    position = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while data[position] == 0x21:  # extensions: label, then sub-blocks until a zero length
        position += 2
        while data[position]:
            position += 1 + data[position]
        position += 1
    assert data[position] == 0x2C
    return position


def gif_with_frames(data: bytes, frames: int) -> bytes:
    """A GIF with ``frames - 1`` tiny frames after its first."""
    assert data.endswith(b"\x3b")
    return data[:-1] + GIF_TINY_FRAME * (frames - 1) + b"\x3b"


def gif_resized(data: bytes, screen: tuple[int, int] | None = None, frame: tuple[int, int] | None = None) -> bytes:
    """A GIF whose logical screen and/or first frame declare another size."""
    out = bytearray(data)
    if screen:
        out[6:10] = struct.pack("<HH", *screen)
    if frame:
        at = gif_image_descriptor_at(data)
        out[at + 5 : at + 9] = struct.pack("<HH", *frame)
    return bytes(out)


def gif_with_comment(data: bytes, text: bytes) -> bytes:
    """A GIF with a comment extension (in sub-blocks of up to 255 bytes) before its first frame."""
    at = gif_image_descriptor_at(data)
    blocks = b"".join(bytes([len(text[n : n + 255])]) + text[n : n + 255] for n in range(0, len(text), 255))
    return data[:at] + b"\x21\xfe" + blocks + b"\x00" + data[at:]


# --- TIFF --------------------------------------------------------------------------------------------


def tiff_ifds(data: bytes) -> list[int]:
    """The offsets of a little-endian TIFF's image file directories, in order (a loop stops it)."""
    assert data[:4] == b"II*\x00"
    offsets, offset = [], struct.unpack_from("<I", data, 4)[0]
    while offset and offset not in offsets and offset < len(data):
        offsets.append(offset)
        count = struct.unpack_from("<H", data, offset)[0]
        offset = struct.unpack_from("<I", data, offset + 2 + 12 * count)[0]
    return offsets


def tiff_entry_at(data: bytes, ifd: int, tag: int) -> int:
    count = struct.unpack_from("<H", data, ifd)[0]
    for n in range(count):
        if struct.unpack_from("<H", data, ifd + 2 + 12 * n)[0] == tag:
            return ifd + 2 + 12 * n
    raise KeyError(tag)


def tiff_with_tags(data: bytes, page: int = 0, **tags: tuple[int, int, int]) -> bytes:
    """A TIFF with entries of a page's IFD replaced in place: name=(type, count, value), a tag named
    by its number as ``t256``."""
    out = bytearray(data)
    ifd = tiff_ifds(data)[page]
    for name, (kind, count, value) in tags.items():
        at = tiff_entry_at(data, ifd, int(name[1:]))
        out[at + 2 : at + 12] = struct.pack("<HII", kind, count, value)
    return bytes(out)


def tiff_resized(data: bytes, width: int, height: int, page: int = 0) -> bytes:
    """A TIFF whose page declares another size (ImageWidth, ImageLength as LONGs)."""
    return tiff_with_tags(data, page, t256=(4, 1, width), t257=(4, 1, height))


def tiff_looped(data: bytes) -> bytes:
    """A TIFF whose first IFD names itself as the next one."""
    ifd = tiff_ifds(data)[0]
    count = struct.unpack_from("<H", data, ifd)[0]
    out = bytearray(data)
    out[ifd + 2 + 12 * count : ifd + 6 + 12 * count] = struct.pack("<I", ifd)
    return bytes(out)


# --- WebP and BMP ------------------------------------------------------------------------------------


def webp_chunk_at(data: bytes, kind: bytes) -> int:
    """The offset of a RIFF chunk's body in a WebP."""
    position = 12
    while position < len(data):
        found, size = struct.unpack_from("<4sI", data, position)
        if found == kind:
            return position + 8
        position += 8 + size + (size & 1)
    raise ValueError(kind)


def webp_lossy_resized(data: bytes, width: int, height: int) -> bytes:
    """A lossy WebP whose VP8 frame header declares another size (14 bits a side)."""
    at = webp_chunk_at(data, b"VP8 ") + 6
    assert data[at - 3 : at] == b"\x9d\x01\x2a", "not a VP8 key frame"
    return data[:at] + struct.pack("<HH", width & 0x3FFF, height & 0x3FFF) + data[at + 4 :]


def webp_extended(data: bytes, canvas: tuple[int, int], flags: int = 0) -> bytes:
    """A lossy WebP put in the extended format (VP8X) with a canvas of another size."""
    body = struct.pack("<I", flags) + (canvas[0] - 1).to_bytes(3, "little") + (canvas[1] - 1).to_bytes(3, "little")
    chunks = b"VP8X" + struct.pack("<I", len(body)) + body + data[12:]
    return b"RIFF" + struct.pack("<I", len(chunks) + 4) + b"WEBP" + chunks


def bmp_with_header(data: bytes, width: int | None = None, height: int | None = None, bits: int | None = None,
                    compression: int | None = None) -> bytes:
    """A BMP whose BITMAPINFOHEADER is edited: size, bits per pixel, compression."""
    out = bytearray(data)
    if width is not None:
        out[18:22] = struct.pack("<i", width)
    if height is not None:
        out[22:26] = struct.pack("<i", height)
    if bits is not None:
        out[28:30] = struct.pack("<H", bits)
    if compression is not None:
        out[30:34] = struct.pack("<I", compression)
    return bytes(out)


# --- the corpus --------------------------------------------------------------------------------------


def cases() -> list[Case]:
    """Every case, built afresh (use :func:`corpus` for the cached list)."""
    made: list[Case] = []

    def case(name: str, data: bytes, error=None, detail: str = "", digit: int | None = None, heavy=False, why=""):
        made.append(Case(name, data, error, detail, digit, heavy, why))

    unreadable, too_large, no_digit = errors.UnreadableImage, errors.ImageTooLarge, errors.NoDigitFound

    # Nothing, or not an image.
    case("empty", b"", unreadable, "empty")
    case("svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script><text>7</text></svg>',
         unreadable, NOT_AN_IMAGE, why="SVG is not read: it is a document, and may carry script")

    # PNG.
    good_png = encode(page(2))
    idat = good_png.index(b"IDAT")
    case("png-truncated-in-data", good_png[: idat + 40], unreadable, CORRUPT)
    case("png-truncated-in-header", good_png[:20], unreadable, CORRUPT, why="cut inside IHDR")
    case("png-flipped-data", flipped(good_png, idat + 30, 16), unreadable, CORRUPT,
         why="the deflate stream is broken (the IDAT CRC is wrong too)")
    case("png-bad-header-crc", png_with_bad_crc(good_png, b"IHDR"), unreadable, CORRUPT,
         why="a PNG, but its header fails its checksum: corrupt, not an unknown format")
    case("png-bad-data-crc", png_with_bad_crc(encode(page(2)), b"IDAT"), None, digit=2,
         why="the data is intact (zlib checks it with its own Adler-32), only its chunk's CRC is wrong")
    case("png-declares-60000x60000", png_resized_header(good_png, 60_000, 60_000), too_large,
         "60000x60000 = 3600000000 pixels, " + OVER_LIMIT, heavy=True)
    case("png-declares-1x10000000", png_resized_header(good_png, 1, 10_000_000), no_digit, TOO_THIN, heavy=True,
         why="under the pixel limit, but no digit fits in 1 px: refused before decoding")
    case("png-1x10000000", png_of_rows(1, 10_000_000, b"\xff"), no_digit, TOO_THIN, heavy=True,
         why="a valid image of 10 megapixels, 1 px wide")
    case("png-3000x4-strip", png_of_rows(3000, 4, bytes(range(250)) * 12), no_digit, NO_DIGIT,
         why="valid and within the aspect limit (750:1); reduced to 1024x1, nothing a digit can be")
    case("png-0x0", png_resized_header(good_png, 0, 0), unreadable, CORRUPT)
    case("png-1x1", encode(Image.new("L", (1, 1), 128)), no_digit, NO_DIGIT)
    case("png-digit-in-a-6000x300-strip", encode(strip_with_digit(5, (6000, 300))), None, digit=5,
         why="an extreme but workable aspect ratio (20:1): the digit is still 51 px at the working size")
    text_bomb, smaller_bomb = zlib_of_zeros(256 << 20), zlib_of_zeros(64 << 20)
    case("png-ztxt-256mb", png_inserted(good_png, [(b"zTXt", b"Comment\x00\x00" + text_bomb)]), too_large, METADATA,
         heavy=True, why="a zTXt that decompresses to 256 MB (a metadata decompression bomb)")
    case("png-iccp-64mb", png_inserted(good_png, [(b"iCCP", b"icc\x00\x00" + smaller_bomb)]), too_large, METADATA,
         heavy=True, why="an ICC profile that decompresses to 64 MB")
    case("png-80-ztxt-of-1mb", png_inserted(good_png, [(b"zTXt", b"k%d\x00\x00" % n + zlib_of_zeros(1_000_000))
                                                      for n in range(80)]),
         too_large, METADATA, heavy=True, why="each under 1 MiB, the most a chunk may hold; 80 MB together")
    case("png-ztxt-after-the-data", png_inserted(good_png, [(b"zTXt", b"Comment\x00\x00" + smaller_bomb)],
                                                 before=b"IEND"),
         too_large, METADATA, heavy=True, why="text chunks after IDAT are read as the image is decoded")
    case("png-12000-empty-chunks", png_inserted(good_png, [(b"abCd", b"")] * 12_000), too_large, "PNG chunks",
         heavy=True, why="Pillow reads each in Python; 4 MiB of them took it 1.5 s and 35 MB")
    case("png-1mb-text", png_inserted(encode(page(3)), [(b"tEXt", b"Comment\x00" + b"x" * (1 << 20))]), None,
         digit=3, why="1 MB of plain text is within what is read (64 MB of text in all)")
    case("png-bad-exif-hex", png_inserted(encode(page(6)), [(b"tEXt", b"Raw profile type exif\x00\nexif\n  8\nzz")]),
         None, digit=6, why="unreadable EXIF means no orientation: the image is taken as stored")
    palette = page(7).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    case("png-palette-with-trns", encode(palette, transparency=int(np.asarray(palette)[0, 0])), None, digit=7,
         why="the paper colour transparent, the anti-aliased edges opaque: flattened onto white")
    deep = Image.fromarray(np.asarray(page(9), np.uint16) * 257)
    case("png-16-bit-gray", encode(deep), None, digit=9)
    case("png-then-html", encode(page(1)) + HTML, None, digit=1, why="a polyglot: bytes after IEND are ignored")
    case("html-then-png", HTML + encode(page(1)), unreadable, NOT_AN_IMAGE, why="a polyglot that is HTML first")
    case("apng-declares-a-billion-frames", apng_of_many_frames(0, 1_000_000_000), None, digit=0,
         why="only the first frame is decoded")

    # JPEG.
    good_jpeg = encode(page(2).convert("RGB"), "JPEG", quality=90)
    scan = jpeg_scan_start(good_jpeg)
    case("jpeg-truncated-in-data", good_jpeg[: scan + 200], unreadable, CORRUPT)
    case("jpeg-truncated-in-header", good_jpeg[: jpeg_segment_at(good_jpeg, 0xC4) + 12], unreadable, CORRUPT)
    dht = jpeg_segment_at(good_jpeg, 0xC4)
    case("jpeg-bad-huffman-table", flipped(good_jpeg, dht + 5, 16), unreadable, CORRUPT,
         why="the Huffman table's code counts overflow")
    case("jpeg-flipped-scan-data", flipped(good_jpeg, scan + (len(good_jpeg) - scan) * 3 // 20, 4), unreadable,
         CORRUPT, why="libjpeg cannot decode past this damage")
    eight = encode(page(8).convert("RGB"), "JPEG", quality=90)
    eight_scan = jpeg_scan_start(eight)
    case("jpeg-flipped-scan-data-recovered", flipped(eight, eight_scan + (len(eight) - eight_scan) // 4, 4), None,
         digit=8, why="libjpeg decodes past this damage, as browsers do, and it misses the digit")
    case("jpeg-10000-scans", jpeg_with_scans(Image.new("L", (4000, 4000), 235), 10_000), too_large, "scans",
         heavy=True, why="each scan a few bytes, but a pass over all 250,000 blocks: 15 s to decode")
    case("jpeg-20000-empty-segments", good_jpeg[:2] + b"\xff\xe5\x00\x02" * 20_000 + good_jpeg[2:], too_large,
         "JPEG segments", heavy=True,
         why="Pillow reads each in Python and keeps it; 4 MiB of them took it 3.3 s and 129 MB")
    case("jpeg-declares-60000x60000", jpeg_resized_header(good_jpeg, 60_000, 60_000), too_large,
         "60000x60000 = 3600000000 pixels, " + OVER_LIMIT, heavy=True)
    case("jpeg-cmyk", encode(page(4).convert("CMYK"), "JPEG", quality=95), None, digit=4)
    case("jpeg-html-comment", jpeg_with_segment(encode(page(6).convert("RGB"), "JPEG", quality=90), 0xFE, HTML),
         None, digit=6, why="a polyglot: HTML in a COM segment")
    case("jpeg-garbage-exif", jpeg_with_segment(encode(page(8), "JPEG", quality=90), 0xE1, b"Exif\x00\x00MM\x00*junk"),
         None, digit=8)
    case("jpeg-garbage-mpf", jpeg_with_segment(encode(page(9), "JPEG", quality=90), 0xE2, b"MPF\x00II*\x00junk"),
         None, digit=9, why="an unreadable multi-picture index: a plain JPEG")

    # GIF.
    good_gif = encode(page(3), "GIF")
    frame = gif_image_descriptor_at(good_gif)
    case("gif-truncated-in-data", good_gif[: frame + 200], unreadable, CORRUPT)
    case("gif-flipped-data", flipped(good_gif, frame + 40, 8, 5), unreadable, CORRUPT)
    case("gif-10000-frames", gif_with_frames(encode(page(5), "GIF"), 10_000), None, digit=5, heavy=True,
         why="only the first frame is decoded")
    case("gif-screen-65535x65535", gif_resized(good_gif, screen=(65535, 65535)), too_large, OVER_LIMIT, heavy=True)
    case("gif-frame-60000x60000", gif_resized(good_gif, frame=(60_000, 60_000)), too_large, OVER_LIMIT, heavy=True,
         why="a frame larger than its screen grows the image")
    long_comment = b"\x21\xfe" + b"\x01x" * 20_000 + b"\x00"  # sub-blocks of one byte each
    case("gif-comment-of-20000-sub-blocks", good_gif[:frame] + long_comment + good_gif[frame:], too_large, "GIF blocks",
         heavy=True,
         why="Pillow reads each in Python; a comment of 1,000,000 (2 MB) took it 0.4 s and 81 MB")
    case("gif-html-comment", gif_with_comment(encode(page(7), "GIF"), HTML) + HTML, None, digit=7,
         why="a polyglot: HTML in a comment and after the trailer")

    # TIFF.
    good_tiff = encode(page(6), "TIFF")
    case("tiff-truncated-in-data", good_tiff[: len(good_tiff) // 2], unreadable, CORRUPT)
    case("tiff-no-strips", tiff_with_tags(good_tiff, t273=(4, 0x7FFFFFFF, 8)), unreadable, CORRUPT,
         why="the strip offsets' count is absurd, so the tag is dropped")
    case("tiff-declares-60000x60000", tiff_resized(good_tiff, 60_000, 60_000), too_large, OVER_LIMIT, heavy=True)
    case("tiff-declares-1x10000000", tiff_resized(good_tiff, 1, 10_000_000), no_digit, TOO_THIN, heavy=True)
    pages = [Image.new("L", (112, 112), 235), page(1)]
    multipage = encode(page(8), "TIFF", save_all=True, append_images=pages)
    case("tiff-3-pages-the-last-declares-60000x60000", tiff_resized(multipage, 60_000, 60_000, page=2), None, digit=8,
         why="only the first page is decoded")
    case("tiff-pages-in-a-loop", tiff_looped(encode(page(0), "TIFF")), None, digit=0)
    lab = page(5).convert("RGB").convert("LAB")
    case("tiff-cielab", encode(lab, "TIFF"), None, digit=5, why="read by its lightness (Pillow converts no LAB)")
    case("tiff-premultiplied-alpha", tiff_with_tags(encode(page(6).convert("LA"), "TIFF"), t338=(3, 1, 1)), None,
         digit=6, why='gray with associated alpha opens as Pillow\'s "La", which converts only to "LA"')
    floats = np.asarray(page(7), np.float32) / 255
    rows, cols = np.random.default_rng(1).integers(0, 112, (2, 3, 12))  # 12 pixels of each, here and there
    floats[rows, cols] = np.array([[np.nan], [np.inf], [-np.inf]])
    case("tiff-float-nan-and-inf", encode(Image.fromarray(floats), "TIFF"), None, digit=7,
         why="scaled by its finite values' range")

    # WebP.
    good_webp = encode(page(3).convert("RGB"), "WEBP", quality=90)
    case("webp-truncated-in-data", good_webp[: len(good_webp) // 2], unreadable, CORRUPT)
    case("webp-flipped-header", flipped(good_webp, webp_chunk_at(good_webp, b"VP8 ") + 10, 16), unreadable, CORRUPT)
    case("webp-declares-16383x16383", webp_lossy_resized(good_webp, 16383, 16383), too_large, OVER_LIMIT,
         heavy=True)
    case("webp-canvas-16777216x16777216", webp_extended(good_webp, (1 << 24, 1 << 24)), unreadable, CORRUPT,
         heavy=True, why="a canvas larger than its image: libwebp refuses it")
    animation = [page(2).convert("RGB"), Image.new("RGB", (112, 112), (235, 235, 235))]
    case("webp-animated", encode(page(4).convert("RGB"), "WEBP", save_all=True, append_images=animation,
                                 duration=100, quality=90), None, digit=4)

    # BMP.
    good_bmp = encode(page(5), "BMP")
    case("bmp-truncated-in-data", good_bmp[: len(good_bmp) // 2], unreadable, CORRUPT)
    case("bmp-declares-60000x60000", bmp_with_header(good_bmp, 60_000, 60_000), too_large, OVER_LIMIT, heavy=True)
    case("bmp-declares-1x10000000", bmp_with_header(good_bmp, 1, 10_000_000), no_digit, TOO_THIN, heavy=True)
    case("bmp-7-bits-a-pixel", bmp_with_header(good_bmp, bits=7), unreadable, CORRUPT)
    case("bmp-garbage-rle8", bmp_with_header(good_bmp, compression=1), unreadable, CORRUPT,
         why="the pixels read as RLE codes: runs past the end of the image")
    return made


def strip_with_digit(digit: int, size: tuple[int, int]) -> Image.Image:
    """A long strip of paper with the digit (as tall as the strip) near its middle."""
    sheet = Image.new("L", size, 235)
    mark = page(digit, scale=max(1, size[1] // 28))
    sheet.paste(mark, (size[0] // 2, 0))
    return sheet


@functools.cache
def corpus() -> tuple[Case, ...]:
    """Every case, built once per process."""
    built = tuple(cases())
    names = [case.name for case in built]
    assert len(set(names)) == len(names), "case names are unique"
    return built


def by_name(name: str) -> Case:
    return next(case for case in corpus() if case.name == name)

