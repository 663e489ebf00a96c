"""The start-up clean-up knows the writers' temp-file names, and only those."""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from pathlib import Path

import pytest

from modules.models.install import _part_path
from modules.paths import DataPaths
from modules.processing.output.saving import write_temp_file
from modules.temp_files import MIN_AGE_S, is_temp_name, remove_orphan_temp_files, startup_folders


def _mkstemp_name(folder: Path, prefix: str) -> str:
    fd, name = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp")
    os.close(fd)
    return Path(name).name


def test_the_writers_temp_names_are_recognised(tmp_path: Path) -> None:
    names = [
        write_temp_file(tmp_path, lambda handle: handle.write(b"x"), ".png").name,  # an image save
        write_temp_file(tmp_path, lambda handle: handle.write(b"x"), ".csv").name,  # log.csv
        _part_path(tmp_path, "model.safetensors").name,  # a download or copy
        _mkstemp_name(tmp_path, ".config.json."),  # settings.py
        _mkstemp_name(tmp_path, ".hashes-"), _mkstemp_name(tmp_path, ".styles-"),
        _mkstemp_name(tmp_path, ".extensions-"),
        f".merged.safetensors.{secrets.token_hex(6)}.tmp",  # merge_writer.py's formula
        f".model.json.{secrets.token_hex(4)}.tmp",  # catalog.py's formula (user notes)
    ]
    assert all(is_temp_name(name) for name in names), [n for n in names if not is_temp_name(n)]


@pytest.mark.parametrize("name", ["model.safetensors", "notes.tmp", ".notes.tmp", "x.part", ".model.part",
                                  ".git", "config.json", ".tmp-", ".model.safetensors.NOTHEX12abcd.tmp",
                                  "tmp-abcdefgh.png", ".tmp-abcdefgh.png.bak"])
def test_other_files_are_not_taken_for_temp_files(name: str) -> None:
    assert not is_temp_name(name)


def test_only_old_temp_files_go_and_links_are_left_alone(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path / "data")
    folder = paths.checkpoints / "sub"
    folder.mkdir(parents=True)
    old, fresh, kept = folder / ".a.safetensors.0123456789ab.tmp", folder / ".b.safetensors.0123456789ab.tmp", \
        folder / "a.safetensors"
    for path in (old, fresh, kept):
        path.write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ".tmp-abcdefgh.png").write_bytes(b"theirs")
    (paths.outputs).mkdir(parents=True)
    (paths.outputs / "linked").symlink_to(outside)  # a link inside the tree is not followed
    (paths.root / ".c.json.abcdefgh.tmp").symlink_to(outside / ".tmp-abcdefgh.png")
    past = time.time() - MIN_AGE_S - 60
    os.utime(old, (past, past))
    os.utime(outside / ".tmp-abcdefgh.png", (past, past))
    assert remove_orphan_temp_files(startup_folders(paths)) == 1
    assert not old.exists() and fresh.exists() and kept.exists()
    assert (outside / ".tmp-abcdefgh.png").exists() and (paths.root / ".c.json.abcdefgh.tmp").is_symlink()
