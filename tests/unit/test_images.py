"""decode_image: every input format we accept becomes HxWx3 BGR uint8, and every bad input a
FaceSearchError with a reason."""

import io
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from facesearch.errors import (
    BadImageError,
    FaceSearchError,
    ImageTooLargeError,
    UnsupportedTypeError,
)
from facesearch.images import ImageLimits, decode_image

LIMITS = ImageLimits()
RED_BGR = np.array([0, 0, 255])
BLUE_BGR = np.array([255, 0, 0])
WHITE = np.array([255, 255, 255])


def encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def hand_made_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGB pixels, with only a few bytes of data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + png_chunk(b"IEND", b"")
    )


def assert_bgr8(array: np.ndarray, height: int, width: int) -> None:
    assert array.shape == (height, width, 3)
    assert array.dtype == np.uint8
    assert array.flags["C_CONTIGUOUS"]


def assert_close(pixel: np.ndarray, expected: np.ndarray | list[int], tolerance: int = 0) -> None:
    difference = np.abs(pixel.astype(int) - np.asarray(expected, dtype=int))
    assert difference.max() <= tolerance, f"{pixel} is not {expected} (+-{tolerance})"


def assert_refused(
    data: bytes, error: type[FaceSearchError], limits: ImageLimits = LIMITS
) -> FaceSearchError:
    with pytest.raises(error) as caught:
        decode_image(data, limits)
    assert isinstance(caught.value, FaceSearchError)
    assert str(caught.value).strip(), "the error must say why"
    return caught.value


# --- formats we accept ---------------------------------------------------------------------


def test_jpeg_rgb_comes_out_as_bgr() -> None:
    data = encode(Image.new("RGB", (16, 8), (255, 0, 0)), "JPEG", quality=100)
    bgr = decode_image(data, LIMITS)
    assert_bgr8(bgr, 8, 16)
    assert_close(bgr[0, 0], RED_BGR, tolerance=2)
    assert_close(bgr[7, 15], RED_BGR, tolerance=2)


def test_png_keeps_exact_pixels_in_bgr_order() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(9, 13, 3), dtype=np.uint8)
    bgr = decode_image(encode(Image.fromarray(rgb), "PNG"), LIMITS)
    assert_bgr8(bgr, 9, 13)
    np.testing.assert_array_equal(bgr, rgb[:, :, ::-1])


def test_rgba_png_transparent_area_becomes_white() -> None:
    img = Image.new("RGBA", (10, 4), (0, 0, 0, 0))
    img.paste((255, 0, 0, 255), (5, 0, 10, 4))
    bgr = decode_image(encode(img, "PNG"), LIMITS)
    assert_bgr8(bgr, 4, 10)
    assert_close(bgr[0, 0], WHITE)
    assert_close(bgr[3, 4], WHITE)
    assert_close(bgr[0, 5], RED_BGR)
    assert_close(bgr[3, 9], RED_BGR)


def test_half_transparent_red_is_blended_over_white() -> None:
    img = Image.new("RGBA", (2, 2), (255, 0, 0, 128))
    bgr = decode_image(encode(img, "PNG"), LIMITS)
    # Over white: red stays 255, green and blue are half of white.
    assert_close(bgr[0, 0], [127, 127, 255], tolerance=1)


def test_grayscale_png_repeats_the_value_in_three_channels() -> None:
    gray = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    img = Image.fromarray(gray, mode="L")
    bgr = decode_image(encode(img, "PNG"), LIMITS)
    assert_bgr8(bgr, 2, 2)
    for channel in range(3):
        np.testing.assert_array_equal(bgr[:, :, channel], gray)


def test_grayscale_with_alpha_png() -> None:
    img = Image.new("LA", (4, 2), (30, 255))
    img.paste((0, 0), (0, 0, 2, 2))
    bgr = decode_image(encode(img, "PNG"), LIMITS)
    assert_close(bgr[0, 0], WHITE)
    assert_close(bgr[1, 3], [30, 30, 30])


def test_sixteen_bit_grayscale_png_is_scaled_to_eight_bits() -> None:
    values = np.array([[0, 65535], [32768, 65535]], dtype=np.uint16)
    img = Image.fromarray(values)
    data = encode(img, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")  # really a 16-bit image
    bgr = decode_image(data, LIMITS)
    assert_bgr8(bgr, 2, 2)
    assert_close(bgr[0, 0], [0, 0, 0])
    assert_close(bgr[0, 1], WHITE)
    assert 127 <= int(bgr[1, 0, 0]) <= 128
    assert len({int(v) for v in bgr[1, 0]}) == 1  # still gray


def test_dark_sixteen_bit_png_is_not_stretched_to_full_brightness() -> None:
    """16-bit samples run 0..65535 whatever the picture: 255 of 65535 is almost black. Scaling
    must not depend on the brightest pixel, or two nearly identical images decode wildly
    differently (brightest 255 -> white, brightest 256 -> black)."""
    darkest = decode_image(encode(Image.fromarray(np.array([[0, 256]], np.uint16)), "PNG"), LIMITS)
    dark = decode_image(encode(Image.fromarray(np.array([[0, 255]], np.uint16)), "PNG"), LIMITS)
    assert int(darkest[0, 1, 0]) <= 1
    assert int(dark[0, 1, 0]) <= 1, f"255/65535 decoded as {dark[0, 1, 0]} of 255"


def test_cmyk_jpeg_is_converted_to_rgb() -> None:
    img = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    data = encode(img, "JPEG", quality=100)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    bgr = decode_image(data, LIMITS)
    assert_bgr8(bgr, 8, 8)
    assert_close(bgr[4, 4], RED_BGR, tolerance=3)


def test_palette_png_with_transparency_becomes_white_where_transparent() -> None:
    img = Image.new("P", (4, 4), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))  # 0 red, 1 blue
    img.putpixel((0, 0), 1)
    data = encode(img, "PNG", transparency=1)
    bgr = decode_image(data, LIMITS)
    assert_bgr8(bgr, 4, 4)
    assert_close(bgr[0, 0], WHITE)  # the transparent blue pixel
    assert_close(bgr[3, 3], RED_BGR)


def test_palette_png_without_transparency_keeps_palette_colours() -> None:
    img = Image.new("P", (3, 1), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    img.putpixel((2, 0), 1)
    bgr = decode_image(encode(img, "PNG"), LIMITS)
    assert_close(bgr[0, 0], RED_BGR)
    assert_close(bgr[0, 2], BLUE_BGR)


def test_animated_gif_uses_the_first_frame() -> None:
    first = Image.new("RGB", (6, 5), (255, 0, 0)).convert("P")
    second = Image.new("RGB", (6, 5), (0, 0, 255)).convert("P")
    data = encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    bgr = decode_image(data, LIMITS)
    assert_bgr8(bgr, 5, 6)
    assert_close(bgr[2, 3], RED_BGR)


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_deflate"}),
        ("WEBP", {"lossless": True}),
        ("BMP", {}),
    ],
)
def test_lossless_formats_round_trip_exactly(fmt: str, options: dict[str, object]) -> None:
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, size=(6, 11, 3), dtype=np.uint8)
    bgr = decode_image(encode(Image.fromarray(rgb), fmt, **options), LIMITS)
    assert_bgr8(bgr, 6, 11)
    np.testing.assert_array_equal(bgr, rgb[:, :, ::-1])


def test_lossy_webp_decodes() -> None:
    data = encode(Image.new("RGB", (16, 16), (255, 0, 0)), "WEBP", quality=95)
    bgr = decode_image(data, LIMITS)
    assert_bgr8(bgr, 16, 16)
    assert_close(bgr[8, 8], RED_BGR, tolerance=8)


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 10, 10))  # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    data = encode(img, "JPEG", exif=exif.tobytes(), quality=95)
    bgr = decode_image(data, LIMITS)
    assert bgr.shape == (40, 20, 3)
    # Turned clockwise, the stored top-left corner is shown at the top right.
    assert_close(bgr[3, 16], RED_BGR, tolerance=10)
    assert_close(bgr[3, 3], BLUE_BGR, tolerance=10)


def test_one_pixel_image() -> None:
    bgr = decode_image(encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"), LIMITS)
    assert bgr.shape == (1, 1, 3)
    assert bgr[0, 0].tolist() == [3, 2, 1]


def test_image_exactly_at_the_limits_is_accepted() -> None:
    data = encode(Image.new("RGB", (5, 4), (9, 9, 9)), "PNG")
    bgr = decode_image(data, ImageLimits(max_bytes=len(data), max_pixels=20))
    assert bgr.shape == (4, 5, 3)


# --- inputs we refuse ----------------------------------------------------------------------


def test_empty_bytes_are_a_bad_image() -> None:
    assert_refused(b"", BadImageError)


def test_truncated_jpeg_is_a_bad_image() -> None:
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "JPEG", quality=90)
    assert_refused(data[: len(data) // 2], BadImageError)


def test_truncated_png_is_a_bad_image() -> None:
    rng = np.random.default_rng(4)
    noise = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "PNG")
    assert_refused(data[: len(data) // 2], BadImageError)


def test_corrupt_png_is_a_bad_image() -> None:
    assert_refused(b"\x89PNG\r\n\x1a\n" + b"this is not a chunk at all" * 8, BadImageError)


def test_text_is_a_bad_image() -> None:
    assert_refused(b"hello, this is a plain text file\nwith two lines\n", BadImageError)


def test_pdf_is_a_bad_image() -> None:
    pdf = (
        b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
        b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
        b"trailer\n<< /Root 1 0 R >>\n%%EOF\n"
    )
    assert_refused(pdf, BadImageError)


def test_image_format_we_do_not_index_is_unsupported() -> None:
    data = encode(Image.new("RGB", (4, 4)), "PPM")
    error = assert_refused(data, UnsupportedTypeError)
    assert "PPM" in str(error)


def test_png_claiming_huge_size_is_refused_without_decoding() -> None:
    data = hand_made_png(30000, 30000)
    assert len(data) < 200
    tracemalloc.start()
    try:
        start = time.perf_counter()
        assert_refused(data, ImageTooLargeError)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 10 * 1024 * 1024  # 30000x30000 RGB would be 2.7 GB


def test_png_over_the_pixel_limit_is_refused_with_the_setting_named() -> None:
    data = hand_made_png(10000, 6000)  # 60 MP: over the default 50 MP, under Pillow's own limits
    error = assert_refused(data, ImageTooLargeError)
    assert "exceeds the limit of 50000000 pixels (FACESEARCH_MAX_IMAGE_PIXELS)" in str(error)


def test_configured_pixel_limit_is_honoured() -> None:
    data = encode(Image.new("RGB", (5, 4)), "PNG")
    assert_refused(data, ImageTooLargeError, ImageLimits(max_pixels=19))


def test_bytes_over_the_limit_are_refused() -> None:
    data = encode(Image.new("RGB", (5, 4)), "PNG")
    error = assert_refused(data, ImageTooLargeError, ImageLimits(max_bytes=len(data) - 1))
    assert f"limit of {len(data) - 1} bytes (FACESEARCH_MAX_IMAGE_BYTES)" in str(error)


def test_error_codes_are_distinct() -> None:
    assert BadImageError.code == "bad_image"
    assert ImageTooLargeError.code == "too_large"
    assert UnsupportedTypeError.code == "unsupported_type"


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about corrupt metadata
@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")  # as images.py sets
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "TIFF", "WEBP", "BMP"])
def test_damaged_files_raise_only_facesearch_errors(fmt: str) -> None:
    """Bytes flipped or cut anywhere: the result is a picture or a FaceSearchError, never a
    third-party exception."""
    rng = np.random.default_rng(11)
    img = Image.fromarray(rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8))
    if fmt == "GIF":
        img = img.convert("P")
    original = encode(img, fmt)
    for _ in range(150):
        damaged = bytearray(original)
        for position in rng.integers(0, len(damaged), size=int(rng.integers(1, 6))):
            damaged[position] = int(rng.integers(0, 256))
        if rng.random() < 0.2:
            damaged = damaged[: int(rng.integers(1, len(damaged)))]
        try:
            bgr = decode_image(bytes(damaged), LIMITS)
        except FaceSearchError as exc:
            assert str(exc)
        else:
            assert bgr.ndim == 3
            assert bgr.shape[2] == 3
            assert bgr.dtype == np.uint8
