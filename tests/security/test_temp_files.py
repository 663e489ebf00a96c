"""Temp files that killed merges, downloads and settings saves leave behind are gone after a
server start, in every folder the studio writes, while every other file stays."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from modules.temp_files import MIN_AGE_S
from tests.security.conftest import write_data_dir
from tests.ui.live_server import start_server

pytestmark = pytest.mark.slow

#: Left by killed writers, relative to the data dir (names as each writer makes them).
ORPHANS = [
    "models/Stable-diffusion/.merged.safetensors.0123456789ab.tmp",  # a merge
    "models/Lora/styles/.big-lora.safetensors.1a2b3c4d.part",  # a download into a subfolder
    "models/ESRGAN/.4x.pth.deadbeef.part",  # an install
    "models/Stable-diffusion/.tiny-sd15.json.abcd1234.tmp",  # the user's notes on a model
    ".config.json.k3j_x9aq.tmp",  # a settings save
    ".styles-ab12cd34.tmp", "cache/.hashes-zz9_a1b2.tmp",
    "outputs/txt2img-images/2026-01-01/.tmp-q1w2e3r4.png",  # an image save
]
#: Look alike but are not ours: they stay.
KEPT = [
    "models/Stable-diffusion/notes.tmp", "models/Stable-diffusion/.backup.part",
    "models/Lora/styles/my-lora.safetensors", ".config.json.bak", "outputs/txt2img-images/2026-01-01/00001-1.png",
    "cache/.hashes-keep.tmp",
]


def test_start_up_removes_our_orphan_temp_files_and_nothing_else(tmp_path: Path) -> None:
    data = write_data_dir(tmp_path / "data")
    past = time.time() - MIN_AGE_S - 60
    for relative in [*ORPHANS, *KEPT]:
        path = data / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")
        os.utime(path, (past, past))
    fresh = data / "models" / "Stable-diffusion" / ".other.safetensors.0123456789ab.tmp"  # a writer at work
    fresh.write_bytes(b"being written")
    for _ in start_server(data, "--listen", "--gradio-auth", "alice:wonderland"):
        left = [relative for relative in ORPHANS if (data / relative).exists()]
        assert not left, f"orphan temp files survived start-up: {left}"
        assert all((data / relative).exists() for relative in KEPT)
        assert fresh.exists()
        assert (data / "models" / "Stable-diffusion" / "tiny-sd15.safetensors").exists()
