"""Images arriving as base64 text (REST and gradio_client): checked before pixels decode, and
images leaving the same way as PNGs that keep their infotext."""

from __future__ import annotations

import base64
import binascii
import io

from PIL import Image

from modules.processing.errors import RequestValidationError
from modules.processing.image_formats import encode_base64

__all__ = ["ACCEPTED_FORMATS", "MAX_IMAGE_BYTES", "decode_base64_image", "png_base64"]

MAX_IMAGE_BYTES = 50 * 1024 * 1024
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")


def decode_base64_image(data: object, field: str = "image") -> Image.Image:
    """Open a base64 image (a ``data:`` URI too). Only the header is read here; Pillow's
    pixel-count guard applies when the pixels are loaded.

    Raises:
        RequestValidationError: naming ``field``: not a string, too large (50 MB), not base64,
            not an image, or not PNG/JPEG/WEBP.
    """
    if not isinstance(data, str) or not data:
        raise RequestValidationError(field, "must be a base64-encoded image")
    if data.startswith("data:") and "," in data[:100]:
        data = data.split(",", 1)[1]
    if len(data) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise RequestValidationError(field, "is larger than the 50 MB limit")
    try:
        image = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
    except Image.DecompressionBombError:
        raise RequestValidationError(field, "has too many pixels to decode safely") from None
    except (binascii.Error, ValueError, OSError):
        raise RequestValidationError(field, "is not a base64-encoded PNG, JPEG or WEBP image") from None
    if image.format not in ACCEPTED_FORMATS:
        raise RequestValidationError(field, f"format {image.format} is not accepted (PNG, JPEG or WEBP)")
    return image


def png_base64(image: Image.Image, infotext: str) -> str:
    """The image as base64 PNG text with its infotext in the "parameters" chunk."""
    return encode_base64(image, infotext)
