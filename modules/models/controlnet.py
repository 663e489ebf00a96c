"""ControlNet models in ``models/ControlNet``: found by name, loaded on demand, one kept.

Two forms are read: a diffusers folder (``config.json`` + ``diffusion_pytorch_model.safetensors``,
what ``ControlNetModel.save_pretrained`` writes) and a single ``.safetensors`` file, in the
original layout (``control_v11p_sd15_canny``) or in diffusers key names (see
``modules.models.controlnet_single_file``). Pickled ``.pth`` files are not listed.

A ControlNet fits a checkpoint when its cross-attention width matches the UNet's (768 for
SD1.x, 1024 for SD2.x, 2048 for SDXL); ``load`` checks this so a mismatch is a clear error,
not a shape error deep in the UNet.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modules.models.controlnet_single_file import context_width_of_file, load_single_file_controlnet
from modules.models.files import ModelFileError
from modules.models.hashing import HashCache

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
            if not root.is_dir():
                continue
            for config_file in sorted(root.rglob("config.json")):
                config = _read_config(config_file.parent)
                if config is not None:
                    width = config.get("cross_attention_dim")
                    found.setdefault(config_file.parent.name, ControlNetFile(
                        config_file.parent.name, config_file.parent, width if isinstance(width, int) else None))
            for file in sorted(root.rglob("*.safetensors")):
                if not (file.parent / "config.json").is_file():
                    found.setdefault(file.stem, ControlNetFile(file.stem, file, _file_context_width(file)))
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

    def short_hash(self, name: str) -> str:
        """The first 10 hex digits of the SHA-256 of the ControlNet's weights file (cached), as
        shown in ``name [hash]``; "" without a hash cache or for an unreadable entry."""
        entry = self.find(name)
        weights = entry.path if entry.path.is_file() else entry.path / "diffusion_pytorch_model.safetensors"
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
        raise ModelFileError(path, "unsupported", f"not a loadable ControlNet ({error})") from None
