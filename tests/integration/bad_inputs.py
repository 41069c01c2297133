"""Inputs that are not good photos, made here from the demo photos (importable because
pyproject puts tests/integration on pytest's pythonpath): the broken and the over-limit ones,
and the odd but valid ones (CMYK, 16-bit, RGBA, animated GIF, no face, 1x1)."""

import io
import struct
import zlib
from pathlib import Path
from typing import cast

from PIL import Image

MIB = 1024 * 1024
MINIMAL_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)
# face_recognition's own test image of a face in RGBA, where the shared data has it.
RGBA_PHOTO = (
    Path(__file__).resolve().parents[3]
    / "shared/data/faces/face_recognition/tests/test_images/32bit.png"
)


def encode(image: Image.Image, kind: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header says width x height, with a few bytes of data: a decompression bomb
    for a reader that believes the header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + png_chunk(b"IEND", b"")
    )


def corrupt_png(photo: Path) -> bytes:
    """A PNG with a sound header and a damaged body: only decoding it finds the fault."""
    data = bytearray(encode(Image.open(photo).convert("RGB"), "PNG"))
    middle = len(data) // 2
    for i in range(middle, middle + 200):
        data[i] ^= 0x55
    return bytes(data)


def padded_jpeg(photo: Path, size: int) -> bytes:
    """A valid JPEG of ``size`` bytes (readers ignore what follows its end marker)."""
    data = photo.read_bytes()
    return data + b"\x00" * (size - len(data))


def rgba_png(photo: Path) -> bytes:
    if RGBA_PHOTO.is_file():
        return RGBA_PHOTO.read_bytes()
    image = Image.open(photo).convert("RGBA")
    image.putalpha(Image.linear_gradient("L").resize(image.size))
    return encode(image, "PNG")


def gray16_png(photo: Path) -> bytes:
    gray = Image.open(photo).convert("L")
    wide = Image.new("I;16", gray.size)
    pixels = cast(tuple[int, ...], gray.get_flattened_data())  # one band: one int a pixel
    wide.putdata([v * 257 for v in pixels])
    return encode(wide, "PNG")


def animated_gif(first: Path, second: Path) -> bytes:
    frames = [Image.open(p).convert("RGB").resize((400, 300)) for p in (first, second)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def broken(demo: dict[str, Path]) -> dict[str, bytes]:
    """name -> bytes of every input that cannot be indexed (or searched), within the default
    size limits."""
    whole = demo["gdp"].read_bytes()
    return {
        "empty.jpg": b"",
        "truncated.jpg": whole[: len(whole) // 2],
        "corrupt.png": corrupt_png(demo["t1"]),
        "notes.jpg": b"shopping list: milk, eggs\n",
        "doc.jpg": MINIMAL_PDF,
        "bomb.png": png_claiming(30000, 30000),
        "garbage.bin": bytes((i * 37 + 11) % 256 for i in range(4096)),
    }


def valid_odd(demo: dict[str, Path]) -> dict[str, bytes]:
    """name -> bytes of unusual inputs that are images all the same, each with a face except
    the last two."""
    return {
        "cmyk.jpg": encode(Image.open(demo["t1"]).convert("CMYK"), "JPEG"),
        "gray16.png": gray16_png(demo["yaoming"]),
        "rgba.png": rgba_png(demo["yaoming"]),
        "animated.gif": animated_gif(demo["yaoming"], demo["gdp"]),
        "no-face.jpg": encode(Image.new("RGB", (200, 200), (128, 128, 128)), "JPEG"),
        "tiny.png": encode(Image.new("RGB", (1, 1), (200, 100, 50)), "PNG"),
    }
