"""The studio's own temp files, and their removal at start-up.

Every file the studio writes goes first to a hidden temp file beside its target and is then
renamed into place, so a reader never sees half a file. A process killed in between (a merge
of several GB, a download, a settings save) leaves the temp file behind; ``remove_orphan_temp_files``
deletes those at start-up, in every folder the studio writes, and nothing else: a file is
removed only if its name matches one of the patterns below, which are the names the writers
give (see each pattern's writer), and only if nobody has written to it for ``MIN_AGE_S``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from pathlib import Path

from modules.paths import DataPaths

__all__ = ["MIN_AGE_S", "TEMP_NAME", "is_temp_name", "remove_orphan_temp_files", "startup_folders"]

_MKSTEMP = "[a-z0-9_]{8}"  # tempfile.mkstemp's random part
#: The writers' temp-file names, one alternative each.
TEMP_NAME = re.compile("|".join((
    rf"\.tmp-{_MKSTEMP}(\.[a-z0-9]{{1,5}})?",  # processing/saving.py write_temp_file (images, log.csv)
    rf"\.(hashes|extensions|styles)-{_MKSTEMP}\.tmp",  # models/hashing.py, extensions/manager.py, styles.py
    rf"\..+\.{_MKSTEMP}\.tmp",  # settings.py (config.json), models/ldm_export.py (mkstemp), catalog.py (hex 8)
    r"\..+\.[0-9a-f]{12}\.tmp",  # models/merge_writer.py (merged checkpoints)
    r"\..+\.[0-9a-f]{8}\.part",  # models/install.py (downloads and copies)
)))
#: A temp file written to in the last 10 minutes may belong to another process still at work
#: (a CLI merge, a download: each write updates its time), so it is left alone.
MIN_AGE_S = 600.0


def is_temp_name(name: str) -> bool:
    """Whether ``name`` (a file name, no folder) is one of the studio's temp-file names."""
    return TEMP_NAME.fullmatch(name) is not None


def startup_folders(paths: DataPaths, model_roots: Iterable[Path] = ()) -> list[tuple[Path, bool]]:
    """The folders the studio writes, each with whether to search it to the bottom: outputs,
    cache and model folders (with ``model_roots``, the extra ones from flags) are; the data dir
    itself (config.json, styles.csv, the extensions' state) is searched only at its top."""
    deep = [paths.outputs, paths.cache, paths.checkpoints, paths.vae, paths.text_encoder, paths.lora, paths.embeddings,
            *paths.upscalers, paths.controlnet, paths.annotators, *model_roots]
    return [(paths.root, False), *((folder, True) for folder in dict.fromkeys(deep))]


def remove_orphan_temp_files(folders: Iterable[tuple[Path, bool]], now: float | None = None) -> int:
    """Delete the studio's temp files left in ``folders`` (``(folder, deep)`` pairs, see
    ``startup_folders``); returns how many. Links are neither followed nor removed."""
    cutoff = (time.time() if now is None else now) - MIN_AGE_S
    removed = 0
    for folder, deep in folders:
        for directory in _directories(folder, deep):
            try:
                entries = list(os.scandir(directory))
            except OSError:
                continue
            for entry in entries:
                try:
                    if (is_temp_name(entry.name) and entry.is_file(follow_symlinks=False)
                            and entry.stat(follow_symlinks=False).st_mtime < cutoff):
                        os.unlink(entry.path)
                        removed += 1
                except OSError:  # gone meanwhile, or not ours to delete: start-up goes on
                    continue
    return removed


def _directories(folder: Path, deep: bool) -> Iterable[str]:
    if not folder.is_dir():
        return []
    if not deep:
        return [str(folder)]
    return (directory for directory, _, _ in os.walk(folder, followlinks=False))
