"""Hostile image files, built cheaply: a huge one-colour PNG written row block by row block with
zlib (140 KB on the wire, gigabytes if decoded, never decoded here), a truncated PNG and a CMYK
JPEG."""

from __future__ import annotations

import base64
import io
import struct
import zlib

from PIL import Image

__all__ = ["b64", "cmyk_jpeg", "encoded", "one_colour_png", "truncated_png"]

_ROWS_PER_BLOCK = 64


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def one_colour_png(width: int, height: int, rgb: tuple[int, int, int] = (0, 0, 0)) -> bytes:
    """An 8-bit RGB PNG of ``width`` x ``height`` in one colour, compressed as it is written, so
    building a 12000x12000 one takes a few MB of memory (the file is 420 KB)."""
    packer = zlib.compressobj(9)
    row = b"\x00" + bytes(rgb) * width  # filter type 0, then the pixels
    parts, done = [], 0
    while done < height:
        rows = min(_ROWS_PER_BLOCK, height - done)
        parts.append(packer.compress(row * rows))
        done += rows
    parts.append(packer.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit, colour type 2 (RGB)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts))
            + _chunk(b"IEND", b""))


def encoded(image: Image.Image, image_format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def truncated_png(size: tuple[int, int] = (64, 64)) -> bytes:
    """A noisy PNG cut in half: its header reads, its pixels do not."""
    data = encoded(Image.effect_noise(size, 60).convert("RGB"))
    return data[: len(data) // 2]


def cmyk_jpeg(size: tuple[int, int] = (32, 32), cmyk: tuple[int, int, int, int] = (0, 255, 255, 0)) -> bytes:
    """A CMYK JPEG (what print workflows save); the default colour is red."""
    return encoded(Image.new("CMYK", size, cmyk), "JPEG")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
