"""Checkpoint registry: scan the model folders and describe what is there.

Scanning reads only safetensors headers (a few KB each), so listing a folder of many
checkpoints is fast; hashes are computed lazily. A broken file is listed with its error
instead of breaking the listing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from modules.families.base import ModelFamily, UnknownFamilyError
from modules.families.registry import CHECKPOINT_SUFFIXES, detect_diffusers_family, detect_family, detect_file_family
from modules.models.files import (
    PICKLE_REFUSED,
    PICKLE_SUFFIXES,
    SAFETENSORS_SUFFIXES,
    ModelFileError,
    public_text,
    read_safetensors_header,
)
from modules.models.hashing import HashCache
from modules.models.walk import FoundFile, folder_size, walk_files

__all__ = ["CHECKPOINT_FOLDER", "CONFIG_DIR_SUFFIX", "CheckpointInfo", "CheckpointRegistry", "ModelNotFoundError",
           "looks_like_path", "native_resolution", "not_found_message"]

#: A checkpoint's own diffusers config folder sits beside it as "<stem>.config/".
CONFIG_DIR_SUFFIX = ".config"
#: The files listed as checkpoints: safetensors, pickle, and the formats of one family (GGUF).
CHECKPOINT_FILE_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES + CHECKPOINT_SUFFIXES
#: The checkpoint folder as messages name it: relative, so no message shows where the data dir is.
CHECKPOINT_FOLDER = "models/Stable-diffusion"


class ModelNotFoundError(LookupError):
    """No model matches a name, or the model named cannot be used; the message says which, in
    words fit for any client (no server paths)."""


def looks_like_path(query: str) -> bool:
    """Whether a model reference is a file path rather than a name: absolute (POSIX, Windows,
    ``~``), or stepping out of the folder with ``..``. Names may hold subfolders ("SD15/ink")."""
    text = query.strip()
    parts = text.replace("\\", "/").split("/")
    return (text.startswith(("/", "\\", "~")) or (len(text) > 1 and text[1] == ":" and text[0].isalpha())
            or ".." in parts)


def not_found_message(kind: str, query: str, folder: str, listing: str) -> str:
    """Why a model reference found nothing, the same whether a path exists on the disk or not."""
    if looks_like_path(query):
        return (f"names a file path; models are named, never given by path: use a {kind} name from {listing} "
                f"(the files in {folder})")
    return f"no {kind} named {query!r} in {folder}; {listing} lists them"


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint on disk.

    Attributes:
        name: path relative to its root folder, without extension (A1111 ``model_name``).
        path: the .safetensors file or the diffusers folder.
        family: detected family, or None when ``error`` is set or detection waits for a load
            (pickle files).
        size: bytes on disk.
        is_diffusers_folder: a diffusers folder rather than a single file.
        config_dir: the checkpoint's own config folder, which wins over the family's.
        error: why the file cannot be used, or None; in words without its path.
    """

    name: str
    path: Path
    family: ModelFamily | None
    size: int
    is_diffusers_folder: bool = False
    config_dir: Path | None = None
    error: str | None = None

    @property
    def filename(self) -> str:
        return self.path.name

    def title(self, short_hash: str | None = None) -> str:
        """A1111's dropdown title: "name.ext [hash]"."""
        base = self.path.name if self.is_diffusers_folder else f"{self.name}{self.path.suffix}"
        return f"{base} [{short_hash}]" if short_hash else base


def describe_checkpoint(path: Path, name: str) -> CheckpointInfo:
    """Inspect one file or diffusers folder; errors end up in ``CheckpointInfo.error``."""
    if path.is_dir():
        try:
            return CheckpointInfo(name, path, detect_diffusers_family(path), folder_size(path), True)
        except UnknownFamilyError as error:
            return CheckpointInfo(name, path, None, 0, True, error=public_text(str(error)))
    size = path.stat().st_size
    own_config = path.with_name(path.stem + CONFIG_DIR_SUFFIX)
    config_dir = own_config if (own_config / "model_index.json").is_file() else None
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return CheckpointInfo(name, path, None, size, config_dir=config_dir)
    try:
        if path.suffix.lower() in CHECKPOINT_SUFFIXES:
            family = detect_file_family(path)
        else:
            header = read_safetensors_header(path)
            family = detect_family(lambda key: key in header.tensors, header.shape)
    except ModelFileError as error:
        return CheckpointInfo(name, path, None, size, config_dir=config_dir, error=public_text(error.detail))
    except UnknownFamilyError as error:
        return CheckpointInfo(name, path, None, size, config_dir=config_dir, error=public_text(str(error)))
    return CheckpointInfo(name, path, family, size, config_dir=config_dir)


def _stamp(path: Path) -> tuple[int, float] | None:
    """Size and modification time of a file (None when it is gone): what tells a changed file."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime


def _candidates(root: Path) -> list[FoundFile]:
    """Model files and diffusers folders under ``root`` (linked folders too), not entering
    diffusers folders or a checkpoint's own config folder."""
    return walk_files(root, CHECKPOINT_FILE_SUFFIXES, folder_marker="model_index.json",
                      skip_folder_suffixes=(CONFIG_DIR_SUFFIX,))


class CheckpointRegistry:
    """The checkpoints found in a set of folders; ``refresh()`` rescans.

    ``fallback_roots`` hold checkpoints that are listed like any other but are the default
    only when no other usable checkpoint exists: the shipped demo model. ``allow_pickle``
    (``--allow-pickle``) decides whether pickle files are loadable or listed as blocked.

    A client names checkpoints, never paths: ``find`` looks names up in the folders (a link in
    a folder may point anywhere its owner linked it). Only the machine's owner may name a file
    elsewhere, through ``find(..., allow_path=True)`` (the CLI, ``--ckpt``); such a file is
    then listed with the others until the process ends.
    """

    def __init__(self, roots: Sequence[Path], hashes: HashCache, fallback_roots: Sequence[Path] = (),
                 allow_pickle: bool = False) -> None:
        self.roots = [Path(r) for r in roots]
        self.fallback_roots = [Path(r).resolve() for r in fallback_roots]
        self.hashes = hashes
        self.allow_pickle = allow_pickle
        self._items: list[CheckpointInfo] = []
        self._owner_files: list[Path] = []  # named by the owner with allow_path, outside the folders
        # Files that passed the scan but failed to load: (size, mtime) then, and why. A file
        # changed since (re-downloaded, fixed) is tried again.
        self._load_failures: dict[Path, tuple[tuple[int, float], str]] = {}
        self.refresh()

    def refresh(self) -> list[CheckpointInfo]:
        items, seen = [], set()
        for root in [*self.roots, *self.fallback_roots]:
            for found in _candidates(root):
                resolved = found.path.resolve()
                if resolved in seen:  # a fallback root inside a scanned root
                    continue
                seen.add(resolved)
                # The name is the path under the folder as the user sees it (a link's own name).
                name = found.relative if found.is_folder else Path(found.relative).with_suffix("").as_posix()
                items.append(describe_checkpoint(found.path, name))
        for path in self._owner_files:
            if path.resolve() not in seen and path.exists():
                seen.add(path.resolve())
                items.append(describe_checkpoint(path, path.stem if path.is_file() else path.name))
        self._items = items
        return list(items)

    def is_fallback(self, info: CheckpointInfo) -> bool:
        """True for checkpoints under a fallback root (the demo model)."""
        return any(info.path.resolve().is_relative_to(root) for root in self.fallback_roots)

    @property
    def items(self) -> list[CheckpointInfo]:
        return list(self._items)

    def blocked(self, info: CheckpointInfo) -> str | None:
        """Why ``info`` cannot be loaded (broken, not a checkpoint, a refused pickle), in words
        without its path; None for a loadable one."""
        if info.error is not None:
            return info.error
        if info.path.suffix.lower() in PICKLE_SUFFIXES and not self.allow_pickle:
            return PICKLE_REFUSED
        failure = self._load_failures.get(info.path)
        if failure is not None and failure[0] == _stamp(info.path):
            return failure[1]
        return None

    def record_load_failure(self, info: CheckpointInfo, reason: str) -> None:
        """Remember that ``info`` failed to load (``reason`` without its path): it is blocked,
        and never the default, until the file changes."""
        stamp = _stamp(info.path)
        if stamp is not None:
            self._load_failures[info.path] = (stamp, public_text(reason))

    def usable(self) -> list[CheckpointInfo]:
        """The checkpoints that are not blocked, in listing order."""
        return [info for info in self._items if self.blocked(info) is None]

    def short_hash(self, info: CheckpointInfo) -> str | None:
        """A1111 short hash of a single-file checkpoint (None for diffusers folders)."""
        return None if info.is_diffusers_folder else self.hashes.short_hash(info.path)

    def title(self, info: CheckpointInfo, compute_hash: bool = False) -> str:
        """A1111's title "name.safetensors [hash]"; the hash only if cached unless ``compute_hash``."""
        if info.is_diffusers_folder:
            return info.title()
        digest = self.hashes.short_hash(info.path) if compute_hash else self.hashes.cached_short_hash(info.path)
        return info.title(digest)

    def default(self) -> CheckpointInfo:
        """The first loadable checkpoint, the user's before the fallback (demo) ones; a blocked
        file (a refused pickle, a broken download) is never the default."""
        # sorted() is stable: folder order is kept within the user's and within the fallbacks.
        usable = sorted(self.usable(), key=self.is_fallback)
        if usable:
            return usable[0]
        raise ModelNotFoundError(f"no usable checkpoint found in {CHECKPOINT_FOLDER}; put a .safetensors "
                                 "checkpoint there")

    def find(self, query: str, allow_path: bool = False) -> CheckpointInfo:
        """Find a checkpoint by title, name, file name, stem or short hash.

        ``allow_path`` also takes a file or diffusers folder by its path: only for what the
        machine's owner typed (the CLI, ``--ckpt``), never for a client's request.

        Raises:
            ModelNotFoundError: nothing matches; the message names no folder on the disk and
                reads the same whether a path exists or not.
        """
        query = query.strip()
        if not query:
            raise ModelNotFoundError("no checkpoint name given")
        bare = query.split(" [", 1)[0]
        for info in self._items:
            if bare in (info.name, info.filename, info.path.stem, info.title()):
                return info
        found = self._owner_file(Path(query).expanduser()) if allow_path else None
        if found is not None:
            return found
        if len(query) == 10 and all(c in "0123456789abcdef" for c in query.lower()):
            for info in self._items:
                if not info.is_diffusers_folder and self.hashes.short_hash(info.path) == query.lower():
                    return info
        if allow_path:  # the owner typed it: their own folders and "no such file" tell them nothing new
            roots = ", ".join(str(r) for r in self.roots)
            raise ModelNotFoundError(f"no checkpoint named {query!r} in {roots}, and no model file at that path")
        raise ModelNotFoundError(not_found_message("checkpoint", query, CHECKPOINT_FOLDER,
                                                   "GET /sdapi/v1/sd-models"))

    def _owner_file(self, path: Path) -> CheckpointInfo | None:
        """The checkpoint at ``path`` (listed from now on), or None when it is not one."""
        is_model_file = path.is_file() and path.suffix.lower() in CHECKPOINT_FILE_SUFFIXES
        if not (is_model_file or (path / "model_index.json").is_file()):
            return None
        resolved = path.resolve()
        for info in self._items:
            if info.path.resolve() == resolved:
                return info
        info = describe_checkpoint(resolved, path.stem if path.is_file() else path.name)
        self._owner_files.append(resolved)
        self._items.append(info)
        return info


def native_resolution(info: CheckpointInfo) -> int:
    """Side in pixels of the images a checkpoint was trained on (512 SD1.x, 768 SD2.x, 1024 SDXL,
    128 for the demo model): the UNet's latent ``sample_size`` times the VAE's downscale, read
    from the checkpoint's own config folder when it has one; a family that ships no config
    folder (FLUX.1) says its own. UIs use it as the default size."""
    if info.family is not None and info.family.code is not None:
        return info.family.defaults.size
    folder = info.path if info.is_diffusers_folder else info.config_dir
    if folder is None and info.family is not None:
        folder = info.family.config_dir
    try:
        unet = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
        vae = json.loads((folder / "vae" / "config.json").read_text(encoding="utf-8"))
        return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
    except (OSError, TypeError, ValueError, KeyError):
        return 512  # A1111's default size
