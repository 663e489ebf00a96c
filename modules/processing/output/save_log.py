"""A1111's "Save" button: copy chosen images into ``log/images`` and log them in ``log.csv``.

Each image is written as ``NNNNN-SEED.png`` with its infotext (``saving.save_image``: atomic,
never overwriting), and gets one row in ``log.csv`` with A1111's columns, read from its
parsed infotext. Rows are appended with a single ``write`` on an ``O_APPEND`` descriptor, so
two saves at once cannot interleave their lines. A ``log.csv`` from an older layout whose
header is a prefix of ours is padded to the new columns (as A1111 does); any other header is
moved aside to ``log-N.csv`` rather than mixed with rows it does not describe.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image

from modules.processing.errors import no_space_as_storage_full
from modules.processing.output.infotext import parse_infotext
from modules.processing.output.saving import save_image, write_temp_file

__all__ = ["LOG_COLUMNS", "LOG_FILE", "append_log_row", "log_row", "save_to_log"]

LOG_FILE = "log.csv"
#: A1111's log.csv header, in its order.
LOG_COLUMNS: tuple[str, ...] = ("prompt", "seed", "width", "height", "sampler", "cfgs", "steps", "filename",
                                "negative_prompt", "sd_model_name", "sd_model_hash")
# log.csv column <- parsed infotext key ("filename" is the saved file's name).
_INFOTEXT_KEYS: Mapping[str, str] = {
    "prompt": "Prompt", "seed": "Seed", "width": "Size-1", "height": "Size-2", "sampler": "Sampler",
    "cfgs": "CFG scale", "steps": "Steps", "negative_prompt": "Negative prompt", "sd_model_name": "Model",
    "sd_model_hash": "Model hash",
}


def log_row(infotext: str, filename: str) -> dict[str, str]:
    """The log.csv row of one saved image; fields its infotext lacks are empty."""
    fields = parse_infotext(infotext) if infotext.strip() else {}
    row = {column: fields.get(key, "") for column, key in _INFOTEXT_KEYS.items()}
    row["filename"] = filename
    return {column: row[column] for column in LOG_COLUMNS}


def _csv_text(rows: Sequence[Sequence[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _write_temp(folder: Path, text: str) -> Path:
    return write_temp_file(folder, lambda handle: handle.write(text.encode("utf-8")), ".csv")


def _read_rows(path: Path) -> list[list[str]] | None:
    """All rows of ``path`` including the header; None if there is no file."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return list(csv.reader(handle))
    except FileNotFoundError:
        return None


def _free_name(folder: Path, stem: str) -> Path:
    number = 1
    while (folder / f"{stem}-{number}.csv").exists():
        number += 1
    return folder / f"{stem}-{number}.csv"


def _ensure_header(path: Path) -> None:
    """Make ``path`` a log.csv with exactly ``LOG_COLUMNS`` as its header."""
    rows = _read_rows(path)
    header = rows[0] if rows else []
    if header == list(LOG_COLUMNS):
        return
    if rows is not None and tuple(header) == LOG_COLUMNS[:len(header)]:
        # Empty, or an older layout (same columns, fewer of them): pad every row, swap the file in.
        padded = [row + [""] * (len(LOG_COLUMNS) - len(row)) for row in rows[1:]]
        tmp = _write_temp(path.parent, _csv_text([LOG_COLUMNS, *padded]))
        os.replace(tmp, path)
        return
    if rows is not None:
        os.replace(path, _free_name(path.parent, path.stem))  # unknown columns: keep that file whole
    tmp = _write_temp(path.parent, _csv_text([LOG_COLUMNS]))
    try:
        os.link(tmp, path)  # fails if another save created it meanwhile; that one has the header too
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def append_log_row(folder: Path, row: Mapping[str, str]) -> Path:
    """Append ``row`` (keys: ``LOG_COLUMNS``) to ``folder/log.csv``, creating it with its header."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOG_FILE
    _ensure_header(path)
    data = _csv_text([[row.get(column, "") for column in LOG_COLUMNS]]).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def _seed_suffix(infotext: str) -> str:
    """The seed for the file name, only when it is a plain number (the text is not trusted)."""
    seed = parse_infotext(infotext).get("Seed", "") if infotext.strip() else ""
    return seed if seed.lstrip("-").isdigit() else "image"


def save_to_log(items: Sequence[tuple[Image.Image, str]], folder: Path) -> list[Path]:
    """Save each (image, infotext) as ``folder/NNNNN-SEED.png`` and log it; returns the new files.

    Existing files are never overwritten: the counter continues past the highest one.

    Raises:
        StorageFullError: no room on the disk (an OSError too).
        OSError: the folder or log.csv cannot be written.
    """
    saved = []
    for image, infotext in items:
        path = save_image(image, folder, _seed_suffix(infotext), infotext or None)
        with no_space_as_storage_full("add the image to log.csv"):
            append_log_row(folder, log_row(infotext, path.name))
        saved.append(path)
    return saved
