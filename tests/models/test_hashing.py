"""The hash cache: a cache that cannot be written never fails the hash asked for, and leaves no temp file."""

from __future__ import annotations

import hashlib
import json
import resource
import subprocess
import sys
from pathlib import Path

from modules.models.hashing import HashCache

_HASH_ON_A_FULL_DISK = """
import sys
from pathlib import Path
from modules.models.hashing import HashCache
print(HashCache(Path(sys.argv[1])).sha256(Path(sys.argv[2])))
"""


def test_the_hash_is_cached_in_its_file(tmp_path: Path) -> None:
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"weights" * 100)
    cache = tmp_path / "cache" / "hashes.json"
    digest = HashCache(cache).sha256(model)
    assert digest == hashlib.sha256(model.read_bytes()).hexdigest()
    assert json.loads(cache.read_text())[str(model.resolve())]["sha256"] == digest


def test_a_cache_that_does_not_fit_on_the_disk_still_gives_the_hash(tmp_path: Path) -> None:
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"weights" * 100)
    cache = tmp_path / "cache" / "hashes.json"
    cache.parent.mkdir()

    def no_room() -> None:  # every write fails with EFBIG, as on a full disk (ENOSPC)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))

    done = subprocess.run([sys.executable, "-c", _HASH_ON_A_FULL_DISK, str(cache), str(model)], capture_output=True,
                          text=True, timeout=120, preexec_fn=no_room, check=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.split()[-1] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert "hash cache" in done.stderr and "not saved" in done.stderr
    assert list(cache.parent.iterdir()) == []  # no cache file, no temp file
