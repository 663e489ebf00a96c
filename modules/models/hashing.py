"""File hashes as A1111 shows them, cached on disk.

A1111's "Model hash" is the first 10 hex digits of the file's SHA-256 (its "shorthash").
LoRA files are named by a different digest, the "addnet" hash (kohya's sd-scripts and
A1111's Lora extension): the SHA-256 of a safetensors file's tensor data without its header,
so editing the metadata does not change it.
Hashing a 7 GB checkpoint takes seconds, so results are cached in a JSON file keyed by path
and validated by size and modification time; the cache is rewritten atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["HashCache", "sha256_of_file", "sha256_of_safetensors_data"]

SHORT_HASH_LENGTH = 10
_CHUNK = 8 * 1024 * 1024


def sha256_of_file(path: Path) -> str:
    """Full SHA-256 hex digest of a file, read in 8 MB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of_safetensors_data(path: Path) -> str:
    """SHA-256 of a safetensors file after its 8-byte length and JSON header (the addnet hash)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        header_length = int.from_bytes(handle.read(8), "little")
        handle.seek(8 + header_length)
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class HashCache:
    """SHA-256 of model files, computed on first request and remembered across runs."""

    def __init__(self, cache_file: Path) -> None:
        self._file = cache_file
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, object]] = self._read()

    def _read(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self._file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self) -> None:
        """Replace the cache file atomically. A cache that cannot be written (a full disk, a
        read-only folder) is only slower next time: it never fails the hash that was asked for."""
        tmp: str | None = None
        try:
            self._file.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._file.parent, prefix=".hashes-", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self._entries, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self._file)
        except OSError as error:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            logger.warning("hash cache %s not saved: %s", self._file, error.strerror or error)

    def sha256(self, path: Path, data_only: bool = False) -> str:
        """Full SHA-256 of ``path``, from the cache when size and mtime still match.

        ``data_only`` hashes a safetensors file's tensor data alone (the addnet hash of LoRAs).
        """
        path = path.resolve()
        stat = path.stat()
        key = f"addnet:{path}" if data_only else str(path)
        with self._lock:
            entry = self._entries.get(key)
            if entry and entry.get("size") == stat.st_size and entry.get("mtime") == stat.st_mtime:
                return str(entry["sha256"])
        digest = sha256_of_safetensors_data(path) if data_only else sha256_of_file(path)
        with self._lock:
            self._entries[key] = {"size": stat.st_size, "mtime": stat.st_mtime, "sha256": digest}
            self._write()
        return digest

    def cached_short_hash(self, path: Path) -> str | None:
        """The short hash if it is cached and still valid; never reads the file."""
        path = path.resolve()
        try:
            stat = path.stat()
        except OSError:
            return None
        with self._lock:
            entry = self._entries.get(str(path))
        if entry and entry.get("size") == stat.st_size and entry.get("mtime") == stat.st_mtime:
            return str(entry["sha256"])[:SHORT_HASH_LENGTH]
        return None

    def short_hash(self, path: Path) -> str:
        """A1111's "Model hash": the first 10 hex digits of the SHA-256."""
        return self.sha256(path)[:SHORT_HASH_LENGTH]
