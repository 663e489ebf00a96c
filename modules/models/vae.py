"""External VAEs (A1111 "SD VAE" setting): find, load and choose them per request.

Choices, as in A1111: "Automatic" uses a VAE named after the checkpoint if one exists
(``<checkpoint>.vae.safetensors`` beside it, or ``models/VAE/<checkpoint>.safetensors``) and
the checkpoint's own VAE otherwise; "None" always uses the checkpoint's own VAE; any other
value names a file in the VAE folders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modules.families.base import ModelFamily
from modules.models.files import SAFETENSORS_SUFFIXES, ModelFileError, public_text, read_safetensors_header
from modules.models.registry import CheckpointInfo, ModelNotFoundError, not_found_message
from modules.models.walk import walk_files

__all__ = ["AUTOMATIC", "BUILTIN", "VAE_FOLDER", "VaeFile", "find_vae", "find_vae_files", "load_vae",
           "resolve_vae_choice", "vae_problem"]

AUTOMATIC = "Automatic"
BUILTIN = "None"
#: The VAE folder as messages name it (relative: no message shows where the data dir is).
VAE_FOLDER = "models/VAE"
_NOT_A_VAE = "is not a VAE (no decoder weights)"


@dataclass(frozen=True)
class VaeFile:
    """A VAE on disk. ``name`` is its file name, as A1111's "VAE" infotext key shows it."""

    name: str
    path: Path


def find_vae_files(roots: Sequence[Path]) -> list[VaeFile]:
    """All .safetensors VAEs under ``roots`` (subfolders and linked folders too), sorted by name."""
    found = [VaeFile(hit.path.name, hit.path) for root in roots for hit in walk_files(root, SAFETENSORS_SUFFIXES)]
    return sorted(found, key=lambda v: v.name.lower())


def resolve_vae_choice(choice: str | None, checkpoint: CheckpointInfo, roots: Sequence[Path]) -> VaeFile | None:
    """The VAE file a choice means for ``checkpoint``, or None for the checkpoint's own VAE.

    ``None`` means "Automatic", A1111's default.

    Raises:
        ModelNotFoundError: a named VAE does not exist.
    """
    if choice in ("", BUILTIN):
        return None
    if choice is None or choice == AUTOMATIC:
        beside = checkpoint.path.with_name(checkpoint.path.stem + ".vae.safetensors")
        if beside.is_file():
            return VaeFile(beside.name, beside)
        same_name = [v for v in find_vae_files(roots) if Path(v.name).stem == checkpoint.path.stem]
        return same_name[0] if same_name else None
    return find_vae(choice, roots)


def find_vae(name: str, roots: Sequence[Path]) -> VaeFile:
    """The VAE file called ``name`` (with or without its extension) in the VAE folders. Names
    only: a path, even one into the folders, is refused like a name that is not there.

    Raises:
        ModelNotFoundError: no such VAE; the message names no folder on the disk.
    """
    for vae in find_vae_files(roots):
        if name in (vae.name, Path(vae.name).stem):
            return vae
    raise ModelNotFoundError(not_found_message("VAE", name, VAE_FOLDER, "GET /sdapi/v1/sd-vae"))


def vae_problem(vae: VaeFile) -> str | None:
    """Why ``vae`` cannot be loaded, from its header alone (an impostor, a truncated file, not a
    VAE), in words without its path; None when it looks loadable."""
    try:
        header = read_safetensors_header(vae.path)
    except ModelFileError as error:
        return public_text(error.detail)
    if not any(k.endswith("decoder.conv_in.weight") for k in header.tensors):
        return _NOT_A_VAE
    return None


def load_vae(vae: VaeFile, family: ModelFamily, config_dir: Path | None, dtype: torch.dtype,
             device: torch.device) -> Any:
    """Load a VAE file (LDM layout, with or without the ``first_stage_model.`` prefix).

    The VAE config comes from the checkpoint's own config folder, else its family's.

    Raises:
        ModelFileError: the file is broken or is not a VAE.
    """
    from diffusers import AutoencoderKL

    header = read_safetensors_header(vae.path)
    if not any(k.endswith("decoder.conv_in.weight") for k in header.tensors):
        raise ModelFileError(vae.path, "unsupported", _NOT_A_VAE)
    config = (config_dir or family.config_dir) / "vae"
    try:
        model = AutoencoderKL.from_single_file(str(vae.path), config=str(config), local_files_only=True,
                                               torch_dtype=dtype)
    except (NotImplementedError, RuntimeError, KeyError, ValueError, OSError) as error:
        detail = f"could not be loaded as a {family.label} VAE: {public_text(str(error))}"
        raise ModelFileError(vae.path, "unsupported", detail) from None
    return model.to(device) if device.type != "cpu" else model
