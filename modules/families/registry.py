"""The registered model families and detection over all of them.

Adding a family = adding its package and one ``FamilyPackage`` line in ``_PACKAGES``. Recognisers
run in that order; the first that claims a file wins. An SD file without a text encoder is placed
by its UNet's cross-attention width, after every family had its say.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from modules.families import sd1, sd2, sdxl
from modules.families.base import ModelFamily, Recogniser, UnknownFamilyError
from modules.families.flux import family as flux
from modules.families.stable_diffusion import recognise_unet_only

__all__ = ["CHECKPOINT_SUFFIXES", "FAMILIES", "FamilyPackage", "UnknownFamilyError", "detect_diffusers_family",
           "detect_family", "detect_file_family", "family_of"]


@dataclass(frozen=True)
class FamilyPackage:
    """One family package as the registry knows it.

    Attributes:
        recognise: its safetensors recogniser (tensor names and shapes).
        families: the families it can return.
        recognise_file: for file formats only it has (``suffixes``): ``path -> family``, which
            may raise ``UnknownFamilyError``.
        suffixes: those file suffixes (".gguf"), listed in the checkpoint folder.
        recognise_folder: ``(diffusers folder, its model_index.json) -> family or None``, for
            pipelines other than SD's.
    """

    recognise: Recogniser
    families: tuple[ModelFamily, ...]
    recognise_file: Callable[[Path], ModelFamily | None] | None = None
    suffixes: tuple[str, ...] = ()
    recognise_folder: Callable[[Path, dict[str, Any]], ModelFamily | None] | None = None


#: In detection order: FLUX's names first (an all-in-one FLUX file shares SD's
#: ``model.diffusion_model.`` prefix), SDXL's (its first encoder's names are SD1.x's under
#: another prefix), then SD2.x, SD1.x.
_PACKAGES: tuple[FamilyPackage, ...] = (
    FamilyPackage(flux.recognise, (flux.FLUX_DEV, flux.FLUX_SCHNELL), flux.recognise_file, (".gguf",),
                  flux.recognise_diffusers_folder),
    FamilyPackage(sdxl.recognise, (sdxl.SDXL, sdxl.SDXL_INPAINT)),
    FamilyPackage(sd2.recognise, (sd2.SD2, sd2.SD2_INPAINT)),
    FamilyPackage(sd1.recognise, (sd1.SD15, sd1.SD15_INPAINT)),
)

FAMILIES: Mapping[str, ModelFamily] = MappingProxyType(
    {family.id: family for package in _PACKAGES for family in package.families})
#: Checkpoint file suffixes beyond safetensors and pickle that some family reads.
CHECKPOINT_SUFFIXES: tuple[str, ...] = tuple(suffix for package in _PACKAGES for suffix in package.suffixes)


def family_of(family_id: str | None) -> ModelFamily:
    """The family of an id recorded in a job or preview (SD1.x for an unknown or missing one)."""
    return FAMILIES.get(family_id or "", sd1.SD15)


@dataclass(frozen=True)
class _Keys:
    has: Callable[[str], bool]
    shape: Callable[[str], tuple[int, ...] | None]


def detect_family(has_key: Callable[[str], bool], shape_of: Callable[[str], tuple[int, ...] | None]) -> ModelFamily:
    """The family of a single-file checkpoint, from its tensor names and shapes.

    Args:
        has_key: whether a tensor name exists.
        shape_of: the shape of a tensor, or None if absent.

    Raises:
        UnknownFamilyError: not a supported model (names what was found instead).
    """
    keys = _Keys(has_key, shape_of)
    for package in _PACKAGES:
        family = package.recognise(keys)
        if family is not None:
            return family
    family = recognise_unet_only(keys, FAMILIES.values())
    if family is not None:
        return family
    if shape_of(sd1.UNET_IN_KEY) is None:
        raise UnknownFamilyError("no UNet found (missing model.diffusion_model.* keys): not a Stable Diffusion "
                                 "checkpoint, or a LoRA/VAE/embedding file in the checkpoint folder")
    raise UnknownFamilyError("the text encoder layout matches no supported family (SD1.x, SD2.x, SDXL)")


def detect_file_family(path: Path) -> ModelFamily:
    """The family of a checkpoint in a format of one family's own (``CHECKPOINT_SUFFIXES``).

    Raises:
        UnknownFamilyError: no family reads this file.
    """
    for package in _PACKAGES:
        if package.recognise_file is not None and path.suffix.lower() in package.suffixes:
            family = package.recognise_file(path)
            if family is not None:
                return family
    raise UnknownFamilyError(f"no supported model family reads {path.suffix} files")


def detect_diffusers_family(folder: Path) -> ModelFamily:
    """The family of a diffusers folder, from its model_index.json and UNet/text-encoder configs."""
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UnknownFamilyError(f"unreadable diffusers folder: {error}") from None
    for package in _PACKAGES:
        family = package.recognise_folder(folder, index) if package.recognise_folder is not None else None
        if family is not None:
            return family
    try:
        unet = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
        text_config = folder / "text_encoder" / "config.json"
        text = json.loads(text_config.read_text(encoding="utf-8")) if text_config.is_file() else {}
    except (OSError, ValueError) as error:
        raise UnknownFamilyError(f"unreadable diffusers folder: {error}") from None
    in_channels = unet.get("in_channels", 4)
    if "text_encoder_2" in index or "XL" in str(index.get("_class_name", "")):
        plain, inpaint = sdxl.SDXL, sdxl.SDXL_INPAINT
    elif unet.get("cross_attention_dim") == sd2.TEXT_WIDTH or text.get("hidden_act") == "gelu":
        # SD2.x: OpenCLIP text encoder (GELU, where OpenAI's CLIP uses quick-GELU), 1024 wide.
        plain, inpaint = sd2.SD2, sd2.SD2_INPAINT
    else:
        plain, inpaint = sd1.SD15, sd1.SD15_INPAINT
    if in_channels not in (4, 9):
        raise UnknownFamilyError(f"UNet has {in_channels} input channels; only 4 (txt2img) and 9 (inpainting) "
                                 "are supported")
    return sd1.with_inpaint(plain, inpaint, in_channels)
