"""Image file formats for outputs and API responses, with the infotext inside, as A1111 writes them.

PNG keeps the infotext in its "parameters" text chunk. JPEG and WEBP have no text chunks, so
A1111 stores it in the EXIF UserComment tag (0x9286), as piexif's "unicode" encoding does: the
8-byte character-code prefix ``UNICODE\\0`` followed by UTF-16 big-endian text (EXIF 2.32,
section 4.6.5, "UserComment"). ``embedded_infotext`` reads all three back, so PNG Info and
``/sdapi/v1/png-info`` work on every file this studio or A1111 writes.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import BinaryIO

from PIL import ExifTags, Image, PngImagePlugin

__all__ = ["PNG", "SAMPLES_FORMATS", "ImageFormat", "embedded_infotext", "encode_base64", "write_image"]

#: A1111's "File format for images" values this studio writes ("jpeg" is "jpg" by another name).
SAMPLES_FORMATS: tuple[str, ...] = ("png", "jpg", "jpeg", "webp")
_PIL_FORMAT = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
_UNICODE_PREFIX = b"UNICODE\x00"
_ASCII_PREFIX = b"ASCII\x00\x00\x00"


@dataclass(frozen=True)
class ImageFormat:
    """How images are encoded: A1111's ``samples_format``, ``jpeg_quality`` (1-100, also used for
    lossy WEBP) and ``webp_lossless`` settings."""

    extension: str = "png"
    jpeg_quality: int = 80
    webp_lossless: bool = False

    def __post_init__(self) -> None:
        if self.extension not in SAMPLES_FORMATS:
            raise ValueError(f"samples_format must be one of {', '.join(SAMPLES_FORMATS)}, got {self.extension!r}")

    @property
    def suffix(self) -> str:
        """The file name suffix, with its dot: ".png", ".jpg", ".jpeg", ".webp"."""
        return "." + self.extension

    @property
    def is_png(self) -> bool:
        return self.extension == "png"


PNG = ImageFormat()


def _exif_with_comment(infotext: str) -> bytes:
    exif = Image.Exif()
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] = _UNICODE_PREFIX + infotext.encode("utf_16_be")
    return exif.tobytes()


def write_image(image: Image.Image, handle: BinaryIO, infotext: str | None, image_format: ImageFormat = PNG) -> None:
    """Encode ``image`` into ``handle`` in ``image_format``, with ``infotext`` embedded (if any)."""
    pil_format = _PIL_FORMAT[image_format.extension]
    if pil_format == "PNG":
        info = PngImagePlugin.PngInfo()
        if infotext:
            info.add_text("parameters", infotext)
        image.save(handle, format="PNG", pnginfo=info)
        return
    options: dict[str, object] = {"quality": image_format.jpeg_quality}
    if infotext:
        options["exif"] = _exif_with_comment(infotext)
    if pil_format == "JPEG":
        # JPEG has no alpha channel; A1111 flattens onto black the same way (convert("RGB")).
        image.convert("RGB").save(handle, format="JPEG", **options)
    else:
        image.save(handle, format="WEBP", lossless=image_format.webp_lossless, **options)


def encode_base64(image: Image.Image, infotext: str | None, image_format: ImageFormat = PNG) -> str:
    """The image as base64 text in ``image_format`` (A1111's API answers in ``samples_format``)."""
    buffer = io.BytesIO()
    write_image(image, buffer, infotext, image_format)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _decode_user_comment(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw
    prefix, body = raw[:8], raw[8:]
    if prefix == _UNICODE_PREFIX:
        # piexif writes big-endian; a byte-order mark, if any, says otherwise.
        encoding = "utf_16_le" if body.startswith(b"\xff\xfe") else "utf_16_be"
        return body.decode(encoding, errors="replace").lstrip("\ufeff")
    if prefix == _ASCII_PREFIX:
        return body.decode("ascii", errors="replace")
    return raw.decode("utf-8", errors="replace")


def embedded_infotext(image: Image.Image) -> str:
    """The infotext an image carries: PNG "parameters" (or an old "comment" chunk), else the EXIF
    UserComment of a JPEG/WEBP; "" when there is none."""
    for key in ("parameters", "comment"):
        value = image.info.get(key)
        if isinstance(value, str) and value:
            return value
    try:
        raw = image.getexif().get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.UserComment)
    except (OSError, ValueError, SyntaxError):  # a malformed EXIF block is just no infotext
        return ""
    return _decode_user_comment(raw).rstrip("\x00") if raw else ""
