"""Managing extensions from the Extensions tab: which are switched off, installing new ones.

Switched-off names are kept in ``extensions.json`` in the data folder (``{"disabled": [...]}``)
and read at every discovery, so a switch survives restarts. Installing copies an extension
folder, or clones a git repository (``git clone --depth 1``), into the data folder's
``extensions/``. An extension is code that runs with the server's rights: whether installing
is allowed at all is decided by the launch flags (``modules.exposure``), not here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["CLONE_TIMEOUT_S", "ExtensionInstallError", "install_from_folder", "install_from_git",
           "read_disabled", "write_disabled"]

CLONE_TIMEOUT_S = 300
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_GIT_URL = re.compile(r"^(https?://|ssh://|git@|file://)\S+$")


class ExtensionInstallError(ValueError):
    """An extension could not be installed; the message says why in words."""


def _state_file(data_dir: Path) -> Path:
    return data_dir / "extensions.json"


def read_disabled(data_dir: Path) -> frozenset[str]:
    """The extension names the user switched off (none when the file is missing or unreadable)."""
    try:
        data = json.loads(_state_file(data_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return frozenset()
    names = data.get("disabled", []) if isinstance(data, dict) else []
    return frozenset(str(n) for n in names) if isinstance(names, list) else frozenset()


def write_disabled(data_dir: Path, names: frozenset[str]) -> None:
    """Persist the switched-off names atomically."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".extensions-", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"disabled": sorted(names)}, handle, indent=1)
    os.replace(tmp, _state_file(data_dir))


def _target(extensions_dir: Path, name: str) -> Path:
    if not _NAME.match(name):
        raise ExtensionInstallError(f"{name!r} is not a usable folder name (letters, digits, '.', '_', '-')")
    target = extensions_dir / name
    if target.exists():
        raise ExtensionInstallError(f"an extension folder {name!r} exists already; remove it first")
    return target


def _check_layout(folder: Path) -> None:
    if not (folder / "extension.json").is_file() and not (folder / "scripts").is_dir():
        raise ExtensionInstallError(f"{folder} has neither extension.json nor a scripts/ folder: not an extension")


def install_from_folder(source: Path, extensions_dir: Path, name: str = "") -> Path:
    """Copy an extension folder into ``extensions_dir`` (as ``name``, default its own name).

    Raises:
        ExtensionInstallError: no such folder, not an extension, or the name is taken.
    """
    source = source.expanduser()
    if not source.is_dir():
        raise ExtensionInstallError(f"{source} is not a folder")
    _check_layout(source)
    target = _target(extensions_dir, name or source.name)
    extensions_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".git", "__pycache__"))
    return target


def install_from_git(url: str, extensions_dir: Path, name: str = "") -> Path:
    """Clone ``url`` (https, ssh, git@ or file://) into ``extensions_dir``.

    Raises:
        ExtensionInstallError: a URL that is not a git URL, a failed or slow clone (git's
            message is included), not an extension, or the name is taken.
    """
    url = url.strip()
    if not _GIT_URL.match(url) or url.startswith("-"):
        raise ExtensionInstallError(f"{url!r} is not a git URL (https://, ssh://, git@ or file://)")
    target = _target(extensions_dir, name or url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"))
    extensions_dir.mkdir(parents=True, exist_ok=True)
    try:
        # "--" ends the options: the URL can never be read as one.
        done = subprocess.run(["git", "clone", "--depth", "1", "--", url, str(target)], capture_output=True,
                              text=True, timeout=CLONE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        shutil.rmtree(target, ignore_errors=True)
        raise ExtensionInstallError(f"git clone {url} failed: {error}") from None
    if done.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        raise ExtensionInstallError(f"git clone {url} failed: {done.stderr.strip().splitlines()[-1:]}")
    try:
        _check_layout(target)
    except ExtensionInstallError:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target
