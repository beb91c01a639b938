"""Decode untrusted image bytes and Base64 strings into RGB pictures, with limits a public endpoint needs."""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_IMAGE_BYTES = 10 * 1024 * 1024  # 10 MiB per uploaded file
MAX_PIXELS = 40_000_000  # width × height after decoding the header (decompression bombs)
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
_DATA_URL = re.compile(r"^data:image/[A-Za-z0-9.+-]+;base64,")
_LINE_BREAKS = re.compile(r"[\r\n]")


class ImageError(ValueError):
    """Input that is not an acceptable image; `status` is the HTTP status a server should answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def decode_image(data: bytes, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode JPEG/PNG/WebP/BMP/GIF (first frame) bytes into an upright RGB image, or raise ImageError."""
    if not data:
        raise ImageError("the image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageError(f"the image is {len(data)} bytes; the limit is {max_bytes} bytes", status=413)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"the image has too many pixels; the limit is {max_pixels} pixels", status=413) from None
    except UnidentifiedImageError:  # also a header claiming zero width or height: Pillow identifies no format then
        raise ImageError("the file is not a JPEG, PNG, WebP, BMP or GIF image", status=415) from None
    except (OSError, SyntaxError, ValueError):
        raise ImageError("the image is corrupt or truncated (its header cannot be read)") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            f"the image is {width}×{height} = {width * height} pixels; the limit is {max_pixels} pixels", status=413
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.seek(0)  # GIF/WebP animations: the first frame
            image.load()
            image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("the image is corrupt or truncated (its pixel data cannot be decoded)") from None
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode (L, LA, P, RGBA, CMYK, 1, I;16, I, F…) to 8-bit RGB; transparency on white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or pixels.max(initial=0) > 255 else 255.0
        gray = np.clip(pixels / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode_base64(text: str, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """Bytes of a Base64 image, with or without a `data:image/...;base64,` prefix; strict about characters.

    Line breaks (as written by `base64.encodebytes`) are accepted; any other character outside the standard
    Base64 alphabet, or wrong padding, raises ImageError (400). Too long a string raises ImageError (413).
    """
    if not isinstance(text, str):
        raise ImageError("`image` must be a Base64 string")
    text = text.strip()
    if text.startswith("data:"):
        match = _DATA_URL.match(text)
        if match is None:
            raise ImageError("a data URL must look like data:image/<type>;base64,<data>")
        text = text[match.end() :]
    text = _LINE_BREAKS.sub("", text)
    if not text:
        raise ImageError("the Base64 image is empty")
    if len(text) > (max_bytes + 2) // 3 * 4:
        raise ImageError(f"the Base64 image decodes to more than {max_bytes} bytes (the limit)", status=413)
    if len(text) % 4:
        raise ImageError(f"invalid Base64: the length ({len(text)}) is not a multiple of 4; check the '=' padding")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError(
            "invalid Base64: only A-Z, a-z, 0-9, '+' and '/' are allowed, with '=' padding at the end"
        ) from None


def encode_base64(data: bytes, data_url: str | None = None) -> str:
    """Base64 text of data; with data_url="png" (or "jpeg"…) prefixed by `data:image/png;base64,`."""
    text = base64.b64encode(data).decode("ascii")
    return f"data:image/{data_url};base64,{text}" if data_url else text
