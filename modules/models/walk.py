"""Walking the model folders: the one scan every model list uses.

Users keep models on another disk and link them in (``models/Lora/big -> /mnt/disk/loras``,
or one linked file), as A1111 allows. ``Path.rglob`` does not follow directory links on
Python 3.11, so every list is built here instead:

* linked folders are entered and linked files are listed, under the link's own path, so a
  LoRA at ``models/Lora/linked/foo.safetensors`` is named ``linked/foo`` whatever the target;
* every folder is entered once, by its resolved real path: a link back to an ancestor ends
  there, and two links to one folder list it once. Real folders are walked before linked ones,
  so a folder that is also reachable through a link keeps its real name;
* an unreadable folder or a dangling link is skipped with a debug log line, never an error;
* hidden entries (".name") are left out, as ``.part`` downloads and ``.git`` folders are;
* the result is sorted case-blind by path, so every list comes out in the same order.
"""

from __future__ import annotations

import heapq
import logging
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FoundFile", "folder_size", "walk_files"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoundFile:
    """One hit of ``walk_files``.

    Attributes:
        path: the file (or model folder) as the user sees it: ``root`` joined with ``relative``,
            through any links, never the link's target.
        relative: the path under ``root``, with "/" separators ("linked/foo.safetensors").
        is_folder: a model folder (one holding ``folder_marker``) rather than a file.
        siblings: the names in the same folder, hidden ones too (previews and sidecars are
            looked up here without one ``stat`` each).
    """

    path: Path
    relative: str
    is_folder: bool
    siblings: frozenset[str]


@dataclass(frozen=True)
class _Pending:
    """A folder waiting to be walked, or a model folder waiting to be listed."""

    path: Path
    relative: str
    real: str
    is_model_folder: bool
    siblings: frozenset[str]


def walk_files(root: Path | str, suffixes: tuple[str, ...] | None = None, *, folder_marker: str | None = None,
               skip_folder_suffixes: tuple[str, ...] = (), include_hidden: bool = False) -> list[FoundFile]:
    """The files under ``root`` (subfolders and linked folders too), sorted case-blind by path.

    Args:
        root: the model folder; a missing one yields nothing.
        suffixes: the file-name endings listed, compared in lower case; None lists every file.
        folder_marker: a file name ("model_index.json") that makes a folder one model: that
            folder is listed itself (``is_folder``) and not entered.
        skip_folder_suffixes: folders whose names end so are not entered (a checkpoint's own
            "<stem>.config" folder).
        include_hidden: list and enter ".name" entries too (a folder's size on disk).
    """
    root = Path(root)
    found: list[FoundFile] = []
    # Ordered by (links on the way, path): the real tree claims each folder before any link to it.
    queue: list[tuple[int, str, str, _Pending]] = []
    heapq.heappush(queue, (0, "", "", _Pending(root, "", os.path.realpath(root), False, frozenset())))
    visited: set[str] = set()
    while queue:
        links, _, _, pending = heapq.heappop(queue)
        if pending.real in visited:
            logger.debug("%s skipped: its folder %s is already listed", pending.path, pending.real)
            continue
        visited.add(pending.real)
        if pending.is_model_folder:
            found.append(FoundFile(pending.path, pending.relative, True, pending.siblings))
            continue
        entries = _read_folder(pending.path)
        siblings = frozenset(entry.name for entry in entries)
        for entry in entries:
            if entry.name.startswith(".") and not include_hidden:
                continue
            relative = f"{pending.relative}/{entry.name}" if pending.relative else entry.name
            path = pending.path / entry.name
            kind = _kind(entry)
            if kind == "file":
                if suffixes is None or entry.name.lower().endswith(suffixes):
                    found.append(FoundFile(path, relative, False, siblings))
            elif kind == "folder":
                if skip_folder_suffixes and entry.name.endswith(skip_folder_suffixes):
                    continue
                is_model = folder_marker is not None and os.path.isfile(os.path.join(entry.path, folder_marker))
                item = _Pending(path, relative, os.path.realpath(entry.path), is_model, siblings)
                heapq.heappush(queue, (links + entry.is_symlink(), relative.lower(), relative, item))
            elif entry.is_symlink():
                logger.debug("%s skipped: a dangling or looping link", path)
    return sorted(found, key=lambda hit: (hit.relative.lower(), hit.relative))


def folder_size(folder: Path | str) -> int:
    """Bytes on disk of every file under ``folder`` (hidden and linked ones too)."""
    total = 0
    for hit in walk_files(folder, include_hidden=True):
        try:
            total += hit.path.stat().st_size
        except OSError:  # deleted or unreadable since the walk
            continue
    return total


def _read_folder(folder: Path) -> list[os.DirEntry[str]]:
    """The entries of ``folder``, or none when it cannot be read (logged, not raised)."""
    try:
        with os.scandir(folder) as it:
            return list(it)
    except OSError as error:
        logger.debug("%s skipped: cannot read it (%s)", folder, error.strerror or error)
        return []


def _kind(entry: os.DirEntry[str]) -> str:
    """"file" or "folder" (following links), else "" (a dangling link, a link loop, a socket)."""
    try:
        if entry.is_dir():
            return "folder"
        return "file" if entry.is_file() else ""
    except OSError:
        return ""
