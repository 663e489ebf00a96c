"""ControlNet models in ``models/ControlNet``: found by name, loaded on demand, one kept.

Two forms are read: a diffusers folder (``config.json`` + ``diffusion_pytorch_model.safetensors``,
what ``ControlNetModel.save_pretrained`` writes) and a single ``.safetensors`` file, in the
original layout (``control_v11p_sd15_canny``) or in diffusers key names (see
``modules.models.controlnet_single_file``). Pickled ``.pth`` files are not listed.

A ControlNet fits a checkpoint when its cross-attention width matches the UNet's (768 for
SD1.x, 1024 for SD2.x, 2048 for SDXL); ``load`` checks this so a mismatch is a clear error,
not a shape error deep in the UNet. ``mismatch`` tells a ControlNet of another family before
anything is loaded, so that a request can be refused when it is submitted.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modules.families.base import ModelFamily
from modules.families.registry import FAMILIES
from modules.models.controlnet_single_file import (
    context_width_of_file,
    has_size_embedding,
    load_single_file_controlnet,
)
from modules.models.files import ModelFileError, read_safetensors_header
from modules.models.hashing import HashCache
from modules.models.walk import walk_files

__all__ = ["ControlNetFile", "ControlNetLibrary", "UnknownControlNetError"]


class UnknownControlNetError(KeyError):
    """No ControlNet of that name; ``choices`` lists those there are."""

    def __init__(self, name: str, choices: Sequence[str]) -> None:
        super().__init__(name)
        self.name, self.choices = name, tuple(choices)

    def __str__(self) -> str:
        return f"no ControlNet {self.name!r}; available: {', '.join(self.choices) or 'none'}"


@dataclass(frozen=True)
class ControlNetFile:
    """One ControlNet: its name (the folder or file stem), path, and cross-attention width
    (None when the config does not say)."""

    name: str
    path: Path
    context_width: int | None


def _read_config(folder: Path) -> dict[str, Any] | None:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) and config.get("_class_name") == "ControlNetModel" else None


class ControlNetLibrary:
    """The ControlNets under ``roots``; the most recently loaded one stays in memory."""

    def __init__(self, roots: Sequence[Path], hashes: HashCache | None = None) -> None:
        self.roots = [Path(root) for root in roots]
        self.hashes = hashes
        self._found: dict[str, ControlNetFile] = {}
        self._loaded: tuple[Path, torch.device, torch.dtype, Any] | None = None
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> list[str]:
        """Rescan the folders; returns the names found, sorted."""
        found: dict[str, ControlNetFile] = {}
        for root in self.roots:
            # A folder holding config.json is one diffusers ControlNet (or another model: skipped);
            # folders are taken before single files, so a folder wins a name both use.
            hits = walk_files(root, (".safetensors",), folder_marker="config.json")
            for hit in (hit for hit in hits if hit.is_folder):
                config = _read_config(hit.path)
                if config is not None:
                    width = config.get("cross_attention_dim")
                    found.setdefault(hit.path.name, ControlNetFile(
                        hit.path.name, hit.path, width if isinstance(width, int) else None))
            for hit in (hit for hit in hits if not hit.is_folder and "config.json" not in hit.siblings):
                found.setdefault(hit.path.stem, ControlNetFile(hit.path.stem, hit.path, _file_context_width(hit.path)))
        self._found = dict(sorted(found.items()))
        return list(self._found)

    def names(self) -> list[str]:
        return list(self._found)

    def find(self, name: str) -> ControlNetFile:
        """The ControlNet called ``name`` (rescanning once if unknown). Raises UnknownControlNetError."""
        if name not in self._found:
            self.refresh()
        if name not in self._found:
            raise UnknownControlNetError(name, self.names())
        return self._found[name]

    def problem(self, name: str) -> str | None:
        """Why the ControlNet ``name`` cannot load, as far as its weights file tells without loading
        it (missing, truncated, not a safetensors file ...), in words without its path; or None.

        Raises:
            UnknownControlNetError: no such name.
        """
        entry = self.find(name)
        weights = _weights_file(entry)
        try:
            read_safetensors_header(weights)
        except ModelFileError as error:
            return f"its weights file {weights.name} {error.detail}"
        return None

    def mismatch(self, name: str, checkpoint: ModelFamily) -> str | None:
        """The label of the family ("SDXL", "SD1.x" ...) the ControlNet ``name`` is made for, when a
        checkpoint of family ``checkpoint`` cannot use it; None when it can, or when the file does
        not tell (``load`` checks again). SDXL ControlNets are known by SDXL's size/crop embedding,
        the others by their text-conditioning width (768: SD1.x, 1024: SD2.x).

        Raises:
            UnknownControlNetError: no such name.
        """
        entry = self.find(name)
        try:
            sdxl = has_size_embedding(entry.path) if entry.path.is_file() else (
                (_read_config(entry.path) or {}).get("addition_embed_type") == "text_time")
        except ModelFileError:
            return None  # loading it reports what is wrong
        made_for = {768: FAMILIES["sd15"], 1024: FAMILIES["sd2"]}.get(entry.context_width or 0)
        if sdxl != (checkpoint.base == "sdxl"):
            if sdxl:
                return FAMILIES["sdxl"].label
            return made_for.label if made_for else f"{FAMILIES['sd15'].label} or {FAMILIES['sd2'].label}"
        if sdxl or made_for is None or checkpoint.base == made_for.base:
            return None
        return made_for.label

    def short_hash(self, name: str) -> str:
        """The first 10 hex digits of the SHA-256 of the ControlNet's weights file (cached), as
        shown in ``name [hash]``; "" without a hash cache or for an unreadable entry."""
        weights = _weights_file(self.find(name))
        if self.hashes is None or not weights.is_file():
            return ""
        try:
            return self.hashes.short_hash(weights)
        except OSError:  # unreadable now (permissions, a disk error): listed without a hash
            return ""

    def load(self, name: str, device: torch.device, dtype: torch.dtype, context_width: int | None = None,
             pooled_width: int | None = None) -> Any:
        """The ``diffusers.ControlNetModel`` called ``name`` on ``device`` in ``dtype``.

        ``context_width`` is the UNet's cross-attention width; ``pooled_width`` the width of
        SDXL's pooled text embedding (a single file's config is read off its shapes).

        Raises:
            UnknownControlNetError: no such name.
            ModelFileError: a broken file or folder, or one made for another model family.
        """
        entry = self.find(name)
        if context_width is not None and entry.context_width not in (None, context_width):
            raise ModelFileError(entry.path, "unsupported",
                                 f"this ControlNet is for a model with {entry.context_width}-wide text "
                                 f"conditioning; the checkpoint's is {context_width}")
        with self._lock:
            if self._loaded is not None and self._loaded[:3] == (entry.path, device, dtype):
                return self._loaded[3]
            self._loaded = None  # free the previous one first
            model = _read_model(entry.path, dtype, pooled_width).to(device).eval()
            self._loaded = (entry.path, device, dtype, model)
            return model


def _weights_file(entry: ControlNetFile) -> Path:
    """The file holding a ControlNet's weights: the single file, or the diffusers folder's."""
    return entry.path if entry.path.is_file() else entry.path / "diffusion_pytorch_model.safetensors"


def _file_context_width(path: Path) -> int | None:
    try:
        return context_width_of_file(path)
    except ModelFileError:
        return None  # listed anyway; loading it reports what is wrong


def _read_model(path: Path, dtype: torch.dtype, pooled_width: int | None) -> Any:
    """A ControlNet from a diffusers folder or a single file, on the CPU."""
    if path.is_file():
        return load_single_file_controlnet(path, dtype, pooled_width)
    from diffusers import ControlNetModel

    try:
        return ControlNetModel.from_pretrained(path, torch_dtype=dtype, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as error:
        # diffusers names the files by their full path; the detail may reach API clients, paths must not.
        reason = str(error).replace(str(path), path.name)
        raise ModelFileError(path, "unsupported", f"not a loadable ControlNet ({reason})") from None
