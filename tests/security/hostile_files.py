"""Hostile model files, built in the test: what a user ends up with after a failed download, a
`git clone` without git-lfs, or a file someone handed them. Each is written under a name that
sorts before ``tiny-sd15``, so a server that picked the first file as its default would pick it."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

#: Stem -> what it is, for the checkpoint folder. The last one passes the scan (its keys look like
#: an SD1.x checkpoint) and fails only when the worker loads it.
CHECKPOINTS = {
    "aa-pickle": "a pickle .ckpt (torch.save of a dict)",
    "ab-lfs-pointer": "a git-lfs pointer saved as .safetensors",
    "ac-truncated": "the first half of the tiny checkpoint",
    "ad-html-page": "an HTML login page saved as .safetensors",
    "ae-not-a-model": "a valid safetensors file of unrelated tensors",
    "af-partial": "a valid safetensors file with SD1.x keys but no weights to speak of",
}
LFS_POINTER = ("version https://git-lfs.github.com/spec/v1\n"
               "oid sha256:4c2f1a6d0e6b1f9a3d5c7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b\nsize 2132625894\n")
HTML_PAGE = "<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Please log in</body></html>\n"


def _write(path: Path, stem: str, good: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if stem.endswith("pickle"):
        path = path.with_suffix(".ckpt")
        torch.save({"state_dict": {"weight": torch.zeros(2, 2)}}, path)
    elif stem.endswith("lfs-pointer"):
        path.write_text(LFS_POINTER)
    elif stem.endswith("truncated"):
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif stem.endswith("html-page"):
        path.write_text(HTML_PAGE)
    elif stem.endswith("not-a-model"):
        save_file({"foo": torch.zeros(4), "bar": torch.ones(2, 3)}, str(path))
    else:  # partial: passes family detection, then the loader finds the weights missing
        save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(32, 4, 3, 3),
                   "cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.zeros(32)}, str(path))
    return path


def write_hostile_checkpoints(folder: Path, good: Path) -> dict[str, Path]:
    """Every kind of ``CHECKPOINTS`` in ``folder`` (``good`` is the real checkpoint to cut short)."""
    return {stem: _write(folder / f"{stem}.safetensors", stem, good) for stem in CHECKPOINTS}


def write_hostile_files(folder: Path, good: Path, prefix: str) -> dict[str, Path]:
    """The same impostors (less the partial checkpoint) for another kind of model, named ``prefix-<kind>``."""
    return {f"{prefix}-{stem[3:]}": _write(folder / f"{prefix}-{stem[3:]}.safetensors", stem, good)
            for stem in CHECKPOINTS if stem != "af-partial"}
