"""Images arriving from a client (base64 text over REST and gradio_client, files the page
uploads): checked before pixels decode, and images leaving the same way as PNGs that keep
their infotext.

Every route that takes an image opens it here, so one limit holds everywhere: the size is read
from the file's header and an image over ``MAX_INPUT_PIXELS`` is refused before its pixels are
decoded (a 12000x12000 PNG of one colour is 140 KB on the wire and 430 MB decoded). A damaged
file (a truncated PNG) is refused naming the field, never as a server error, and odd modes (CMYK
JPEGs, 16-bit greyscale PNGs) come out in a mode the engine works in.
"""

from __future__ import annotations

import base64
import binascii
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from modules.processing.errors import RequestValidationError
from modules.processing.output.image_formats import encode_base64

__all__ = ["ACCEPTED_FORMATS", "MAX_IMAGE_BYTES", "MAX_INPUT_PIXELS", "MAX_REQUEST_PIXELS", "PixelBudget",
           "check_input_pixels", "decode_base64_image", "open_image_file", "png_base64"]

MAX_IMAGE_BYTES = 50 * 1024 * 1024
#: The largest image accepted from a client (width x height), on every route and tab; checked
#: from the header, before the pixels are decoded. 4096x4096 RGB is 48 MB decoded.
MAX_INPUT_PIXELS = 4096 * 4096
#: All the images one request may bring, together (a 4096x4096 PNG of one colour is 50 KB, so a
#: body limit alone would let a thousand of them in): a batch over it is refused; split it.
MAX_REQUEST_PIXELS = 4 * MAX_INPUT_PIXELS
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")
# What Pillow raises on a damaged or truncated file while it decodes (zlib and struct errors
# escape from some PNG chunks; SyntaxError from a bad chunk checksum; EOFError from a short file).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error, IndexError)
# Modes kept as decoded: the engine converts these itself (``image_ops.flatten`` lays alpha on white).
_KEPT_MODES = frozenset({"RGB", "RGBA", "L", "LA", "P", "PA", "1"})


def check_input_pixels(size: tuple[int, int], field: str) -> None:
    """Raise ``RequestValidationError`` naming ``field`` if a ``(width, height)`` image is over
    ``MAX_INPUT_PIXELS`` (the one limit for every image a client sends)."""
    width, height = size
    if width * height > MAX_INPUT_PIXELS:
        side = int(MAX_INPUT_PIXELS ** 0.5)
        raise RequestValidationError(field, f"is {width}x{height} pixels; images are accepted up to "
                                            f"{MAX_INPUT_PIXELS:,} pixels ({side}x{side})")


class PixelBudget:
    """The pixels left to one request's images (``MAX_REQUEST_PIXELS``): ``take`` each image as it
    is decoded (each is already within ``MAX_INPUT_PIXELS``), and the one that goes over is refused."""

    def __init__(self, limit: int = MAX_REQUEST_PIXELS) -> None:
        self.limit = limit
        self.used = 0

    def take(self, image: Image.Image, field: str) -> Image.Image:
        """``image``, counted; RequestValidationError naming ``field`` once the request is over its budget."""
        self.used += image.width * image.height
        if self.used > self.limit:
            raise RequestValidationError(field, f"the request's images add up to more than {self.limit:,} pixels; "
                                                "send fewer or smaller images per request")
        return image


def _usual_mode(image: Image.Image) -> Image.Image:
    """``image`` in a mode the engine and Pillow's conversions handle faithfully: 16/32-bit grey
    is scaled to 8 bits (Pillow's own conversion clips it to white), CMYK and other colour
    spaces become RGB. The infotext chunk stays."""
    if image.mode in _KEPT_MODES:
        return image
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        # PNG stores 16-bit grey; a 32-bit one that stays under 256 is already 8-bit.
        scale = 257.0 if values.max(initial=0.0) > 255.0 else 1.0
        grey = Image.fromarray(np.clip(np.rint(values / scale), 0, 255).astype(np.uint8), mode="L")
        grey.info = dict(image.info)
        return grey
    converted = image.convert("RGB")
    converted.info = dict(image.info)
    return converted


def _open_checked(source: io.BytesIO | Path, field: str) -> Image.Image:
    """Open ``source`` (bytes or a file), check its format and size from the header, then decode it.

    Raises:
        RequestValidationError: naming ``field``: not an image, not PNG/JPEG/WEBP, too many
            pixels (nothing decoded), or damaged (truncated, bad data).
    """
    try:
        image = Image.open(source)
    except Image.DecompressionBombError:
        raise RequestValidationError(field, f"has too many pixels (images are accepted up to "
                                            f"{MAX_INPUT_PIXELS:,})") from None
    except _DECODE_ERRORS:
        raise RequestValidationError(field, "is not a PNG, JPEG or WEBP image") from None
    try:
        if image.format not in ACCEPTED_FORMATS:
            raise RequestValidationError(field, f"format {image.format} is not accepted (PNG, JPEG or WEBP)")
        check_input_pixels(image.size, field)  # from the header: nothing is decoded yet
        format_name = image.format
        try:
            image.load()
        except _DECODE_ERRORS:
            raise RequestValidationError(field, f"is a damaged or truncated {format_name} image; its pixels "
                                                "could not be read") from None
        opened = _usual_mode(image)
        if isinstance(source, Path) and opened is image:
            opened = image.copy()  # the file closes below; the copy keeps the pixels (and the infotext)
    finally:
        if isinstance(source, Path):
            image.close()
    opened.format = format_name
    return opened


def decode_base64_image(data: object, field: str = "image") -> Image.Image:
    """Open a base64 image (a ``data:`` URI too): its size is checked from the header before its
    pixels decode, then it is decoded in full, so a damaged image fails here, naming ``field``.

    Returns a loaded image with its ``info`` (infotext) and ``format``; 16-bit grey comes as
    8-bit ``L`` and CMYK as ``RGB``; other modes as decoded.

    Raises:
        RequestValidationError: naming ``field``: not a string, too large (50 MB), not base64,
            not an image, not PNG/JPEG/WEBP, over ``MAX_INPUT_PIXELS``, or damaged.
    """
    if not isinstance(data, str) or not data:
        raise RequestValidationError(field, "must be a base64-encoded image")
    if data.startswith("data:") and "," in data[:100]:
        data = data.split(",", 1)[1]
    if len(data) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise RequestValidationError(field, "is larger than the 50 MB limit")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RequestValidationError(field, "is not a base64-encoded PNG, JPEG or WEBP image") from None
    return _open_checked(io.BytesIO(raw), field)


def open_image_file(path: str | Path, field: str = "image") -> Image.Image:
    """An uploaded image file, checked and decoded as ``decode_base64_image`` does; messages name
    ``field`` and never the file's path (a server temp folder)."""
    if not Path(path).is_file():
        raise RequestValidationError(field, "the uploaded file is gone; upload it again")
    return _open_checked(Path(path), field)


def png_base64(image: Image.Image, infotext: str) -> str:
    """The image as base64 PNG text with its infotext in the "parameters" chunk."""
    return encode_base64(image, infotext)
