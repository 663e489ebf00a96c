"""Saving images: A1111 file names, infotext in the file, atomic writes that never overwrite.

``outputs/txt2img-images/YYYY-MM-DD/NNNNN-SEED.png`` (or ``.jpg``/``.webp``, A1111's "File format
for images"): the five-digit counter continues from the
highest number already in the folder. Grids are ``grid-NNNN.png``, with a four-digit counter
of their own. The image is written to a temporary file in the same
folder, flushed to disk, then hard-linked to its final name; linking fails if the name exists,
so two writers can never overwrite each other (the loser takes the next number), and a crash
leaves either no file or a complete one. A full disk (``modules.storage.is_no_space``) raises
``StorageFullError``, and the temp file is gone.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from modules.processing.errors import ProcessingError, no_space_as_storage_full
from modules.processing.output.image_formats import PNG, ImageFormat, write_image

__all__ = ["OutputPathError", "date_folder", "inside_output_folder", "next_counter", "save_grid", "save_image",
           "write_temp_file"]

_COUNTER_RE = re.compile(r"^(\d{5,})-")
_GRID_COUNTER_RE = re.compile(r"^grid-(\d{4,})")


class OutputPathError(ProcessingError):
    """A folder inside an output folder is a link that leads out of it: nothing is written there."""


def date_folder(outputs: Path, kind: str, today: dt.date | None = None) -> Path:
    """``outputs/<kind>/YYYY-MM-DD`` (A1111's default ``[date]`` directory pattern), checked
    with ``inside_output_folder`` against ``outputs/<kind>``.

    Raises:
        OutputPathError: the date folder is a link out of ``outputs/<kind>``.
    """
    return inside_output_folder(outputs / kind, outputs / kind / (today or dt.date.today()).isoformat())


def inside_output_folder(root: Path, folder: Path) -> Path:
    """``folder``, once sure that it stays inside the output folder ``root`` after resolving links.

    The owner may move an output folder as a whole: ``root`` itself (or ``outputs/``) may be a
    link, and is followed. But a link below ``root`` that leads elsewhere would let whoever can
    make links in the output tree send the server's writes anywhere on the disk, so it is refused.
    The message names the folders relative to ``root``'s parent only (no server path).

    Raises:
        OutputPathError: ``folder`` resolves outside ``root``.
    """
    real_root, real = root.resolve(), folder.resolve()
    if real != real_root and not real.is_relative_to(real_root):
        try:
            shown = folder.relative_to(root.parent).as_posix()
        except ValueError:
            shown = folder.name
        raise OutputPathError(f"{shown} is a link that leads out of the output folder {root.name}; "
                              "images are not written there (remove the link, or link the whole output folder)")
    return folder


def next_counter(folder: Path, pattern: re.Pattern[str] = _COUNTER_RE) -> int:
    """One past the highest NNNNN- prefix in ``folder`` (0 for an empty folder); ``pattern``'s
    first group is the number (the grids' ``grid-NNNN`` has its own)."""
    highest = -1
    if folder.is_dir():
        for entry in folder.iterdir():
            match = pattern.match(entry.name)
            if match:
                highest = max(highest, int(match.group(1)))
    return highest + 1


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_temp_file(folder: Path, write: Callable[[BinaryIO], object], suffix: str) -> Path:
    """A complete, fsynced hidden temp file in ``folder``, filled by ``write(handle)``.

    Being in the destination folder (same file system), it can then be linked or renamed into
    place atomically; on any error it is removed.
    """
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def save_image(image: Image.Image, folder: Path, stem_suffix: str, infotext: str | None = None,
               exact_path: Path | None = None, image_format: ImageFormat = PNG) -> Path:
    """Save ``image`` as ``folder/NNNNN-<stem_suffix>.png`` (or ``exact_path``), atomically.

    Args:
        image: the picture.
        folder: destination folder, created if missing.
        stem_suffix: the part after the counter (A1111: the seed).
        infotext: stored in the file (PNG "parameters" chunk, EXIF UserComment otherwise).
        exact_path: write exactly this file instead (fails if it exists).
        image_format: the file format; its suffix replaces ``.png`` in the name.

    Returns:
        The final path.

    Raises:
        FileExistsError: ``exact_path`` exists already.
        StorageFullError: no room on the disk; nothing was left behind.
    """
    with no_space_as_storage_full("save the image"):
        if exact_path is None:
            return _save_numbered(image, folder, infotext, image_format, next_counter,
                                  lambda n: f"{n:05d}-{stem_suffix}{image_format.suffix}")
        return _save_exact(image, exact_path, infotext, image_format)


def _save_exact(image: Image.Image, exact_path: Path, infotext: str | None, image_format: ImageFormat) -> Path:
    folder = exact_path.parent
    folder.mkdir(parents=True, exist_ok=True)
    tmp = write_temp_file(folder, lambda handle: write_image(image, handle, infotext, image_format),
                          image_format.suffix)
    try:
        os.link(tmp, exact_path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(folder)
    return exact_path


def save_grid(image: Image.Image, folder: Path, infotext: str | None = None,
              image_format: ImageFormat = PNG) -> Path:
    """Save a grid as ``folder/grid-NNNN.png`` (A1111's grid names: a four-digit counter of
    their own), atomically and never overwriting, ``infotext`` inside as ``save_image`` does."""
    with no_space_as_storage_full("save the grid"):
        return _save_numbered(image, folder, infotext, image_format, lambda f: next_counter(f, _GRID_COUNTER_RE),
                              lambda n: f"grid-{n:04d}{image_format.suffix}")


def _save_numbered(image: Image.Image, folder: Path, infotext: str | None, image_format: ImageFormat,
                   first_counter: Callable[[Path], int], name: Callable[[int], str]) -> Path:
    """Write ``image`` to a temp file in ``folder``, then hard-link it as ``name(n)`` from
    ``first_counter(folder)`` on, taking the next number while a name is taken (another writer)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = write_temp_file(folder, lambda handle: write_image(image, handle, infotext, image_format),
                          image_format.suffix)
    try:
        counter = first_counter(folder)
        while True:
            final = folder / name(counter)
            try:
                os.link(tmp, final)
                break
            except FileExistsError:
                counter += 1
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(folder)
    return final
