"""Decode untrusted image bytes into a BGR uint8 array, within limits.

Everything that can go wrong with an input file is turned into a ``FaceSearchError`` here,
where the bytes enter, so callers only see clear reasons.
"""

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from facesearch.errors import BadImageError, ImageTooLargeError, UnsupportedTypeError

# Formats Pillow may identify that we accept; MPO is what many phone cameras write for JPEG.
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF"})
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".dib", ".tif", ".tiff", ".gif"}
)

# Truncated files must fail, not decode to a half-grey picture.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# facesearch checks every header against its own max_image_pixels before any pixel is decoded
# (``_check_header``), so Pillow's process-wide guard, which only warns below 179 megapixels and
# would cap the configurable limit, is switched off.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class ImageLimits:
    """Upper bounds on one input image; a larger one is refused before it is decoded."""

    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 50_000_000


def decode_image(data: bytes, limits: ImageLimits) -> np.ndarray:
    """Return the image as an HxWx3 BGR uint8 array, EXIF orientation applied."""
    with _opened(data, limits) as img:
        rgb = to_rgb8(ImageOps.exif_transpose(img))
    return np.ascontiguousarray(rgb[:, :, ::-1])


def check_image(data: bytes, limits: ImageLimits) -> None:
    """Refuse, from the header alone, what ``decode_image`` would refuse before decoding (the
    gateway answers at once; a corrupt body is still found later, by the detector)."""
    with _opened(data, limits):
        pass


def check_size(size: int, limits: ImageLimits, what: str = "") -> None:
    """Refuse ``size`` bytes beyond the limit, naming the variable that sets it."""
    if size > limits.max_bytes:
        raise ImageTooLargeError(
            f"{what}{size} bytes exceeds the limit of {limits.max_bytes} bytes "
            "(FACESEARCH_MAX_IMAGE_BYTES)"
        )


@contextmanager
def _opened(data: bytes, limits: ImageLimits) -> Iterator[Image.Image]:
    """The image opened lazily, within the limits; every failure as a facesearch error."""
    if not data:
        raise BadImageError("empty file")
    check_size(len(data), limits)
    try:
        with Image.open(io.BytesIO(data)) as img:
            _check_header(img, limits)
            yield img
    except (ImageTooLargeError, UnsupportedTypeError):
        raise
    except UnidentifiedImageError as exc:
        raise BadImageError("not an image, or a format facesearch does not read") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        raise BadImageError(f"corrupt or truncated image: {exc}") from exc


def _check_header(img: Image.Image, limits: ImageLimits) -> None:
    if img.format not in SUPPORTED_FORMATS:
        raise UnsupportedTypeError(f"image format {img.format} is not supported")
    width, height = img.size
    if width < 1 or height < 1:
        raise BadImageError(f"image has no pixels ({width}x{height})")
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            f"{width}x{height} pixels exceeds the limit of {limits.max_pixels} pixels "
            "(FACESEARCH_MAX_IMAGE_PIXELS)"
        )


def to_rgb8(img: Image.Image) -> np.ndarray:
    """Any Pillow mode (RGBA, LA, P, L, 1, CMYK, I;16, I, F) as HxWx3 RGB uint8."""
    mode = img.mode
    if mode.startswith("I;16"):
        gray16 = np.asarray(img).astype(np.float32) * (255.0 / 65535.0)
        return _gray_to_rgb8(np.rint(gray16))
    if mode in ("I", "F"):
        return _wide_gray_to_rgb8(np.asarray(img))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        # Transparent areas become white, as most viewers show them.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def _wide_gray_to_rgb8(values: np.ndarray) -> np.ndarray:
    """32-bit integer or float gray of unknown range: 16-bit range if it exceeds 8 bits, the
    unit range for floats up to 1."""
    gray = values.astype(np.float32)
    peak = float(gray.max()) if gray.size else 0.0
    if peak > 255.0:
        gray *= 255.0 / (65535.0 if peak <= 65535.0 else peak)
    elif 0.0 < peak <= 1.0 and values.dtype.kind == "f":
        gray *= 255.0
    return _gray_to_rgb8(gray)


def _gray_to_rgb8(gray: np.ndarray) -> np.ndarray:
    gray8 = np.clip(gray, 0, 255).astype(np.uint8)
    return np.repeat(gray8[:, :, None], 3, axis=2)
