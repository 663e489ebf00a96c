"""Choosing FLUX.1's text encoders and VAE, the way Forge does.

A BFL transformer-only file (``flux1-dev.safetensors``) needs CLIP-L and T5-XXL from
``models/text_encoder/`` and the autoencoder from ``models/VAE/``; a ComfyUI all-in-one
checkpoint or a diffusers folder carries them. For each part, in this order:

1. the part embedded in the checkpoint (or the diffusers folder's subfolder) is used;
2. else the user's choice, Forge's ``forge_additional_modules`` (file names from those folders:
   the "VAE / Text Encoder" selector, ``--text-encoder NAME`` / ``--vae NAME``), names it;
3. else the one compatible file of its kind in the folders is used;
4. else a ``MissingPartError`` (none) or ``AmbiguousPartError`` (several) says what to do.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modules.families.base import ModelPartError
from modules.families.flux.autoencoder import load_flux_vae, load_flux_vae_folder
from modules.families.flux.part_files import (
    CLIP_L,
    T5XXL,
    VAE,
    FluxWidths,
    PartFile,
    classify_keys,
    scan_part_files,
    widths_from_transformer_keys,
)
from modules.families.flux.t5 import load_t5_encoder, load_t5_encoder_folder
from modules.families.flux.text_encoders import FluxTextEncoders, load_clip_l, load_clip_l_folder
from modules.families.flux.tokenizers import build_flux_clip_tokenizer, build_t5_tokenizer
from modules.models.files import read_safetensors_header
from modules.models.registry import looks_like_path
from modules.models.vae import VAE_FOLDER

__all__ = ["TEXT_ENCODER_FOLDER", "AmbiguousPartError", "FluxPart", "FluxPartError", "FluxParts",
           "MissingPartError", "UnusablePartError", "choose_flux_parts", "embedded_parts", "load_part",
           "load_text_encoders"]

TEXT_ENCODER_FOLDER = "models/text_encoder"
# kind -> (what it is, the files to put, the folder), for the messages.
_NEEDS = {
    CLIP_L: ("a CLIP-L text encoder", "clip_l.safetensors", TEXT_ENCODER_FOLDER),
    T5XXL: ("a T5-XXL text encoder", "t5xxl_fp16.safetensors (or t5xxl_fp8_e4m3fn.safetensors)", TEXT_ENCODER_FOLDER),
    VAE: ("its VAE", "ae.safetensors", VAE_FOLDER),
}
# A diffusers FLUX folder's subfolder for each part.
_DIFFUSERS_FOLDERS = {CLIP_L: "text_encoder", T5XXL: "text_encoder_2", VAE: "vae"}
_HOW_TO_PICK = ('choose one in the "VAE / Text Encoder" selector, or name it in '
                'override_settings {"forge_additional_modules": [...]} on the API or with --text-encoder / --vae '
                'on the command line')


class FluxPartError(ModelPartError):
    """A FLUX.1 part cannot be settled. ``part`` is ``"clip_l"``, ``"t5xxl"`` or ``"vae"``."""


class MissingPartError(FluxPartError):
    """No file of the part is there."""


class AmbiguousPartError(FluxPartError):
    """Several files of the part are there and none is chosen; ``candidates`` are their names."""

    def __init__(self, part: str, message: str, candidates: Sequence[str]) -> None:
        super().__init__(part, message)
        self.candidates = tuple(candidates)


class UnusablePartError(FluxPartError):
    """A chosen name matches no file, or a file FLUX.1 cannot use, or two chosen files clash."""


@dataclass(frozen=True)
class FluxPart:
    """Where one part's weights are.

    Attributes:
        kind: ``"clip_l"``, ``"t5xxl"`` or ``"vae"``.
        path: the file (single-file layout) or the diffusers subfolder.
        prefix: the part's key prefix in the file ("" for a file of its own).
        layout: ``"single_file"`` or ``"diffusers"``.
        embedded: it came with the checkpoint rather than from the part folders.
        name: the file's name under its folder (what the user picks), or the checkpoint's name.
    """

    kind: str
    path: Path
    prefix: str
    layout: str
    embedded: bool
    name: str


@dataclass(frozen=True)
class FluxParts:
    """The three parts FLUX.1 needs besides its transformer."""

    clip_l: FluxPart
    t5xxl: FluxPart
    vae: FluxPart


def embedded_parts(checkpoint: Path) -> tuple[dict[str, FluxPart], FluxWidths]:
    """The parts a checkpoint carries (an all-in-one file's prefixes, a diffusers folder's
    subfolders) and the encoder widths its transformer takes. Reads headers and configs only;
    a GGUF transformer carries no parts and is taken to have FLUX.1's real widths."""
    if checkpoint.is_dir():
        return _diffusers_parts(checkpoint)
    if checkpoint.suffix.lower() == ".gguf":
        return {}, FluxWidths()
    shapes = {key: tuple(entry["shape"]) for key, entry in read_safetensors_header(checkpoint).tensors.items()}
    widths = widths_from_transformer_keys(shapes)
    parts = {kind: FluxPart(kind, checkpoint, prefix, "single_file", True, checkpoint.name)
             for kind, _, prefix in classify_keys(shapes, widths) if kind}
    return parts, widths


def _diffusers_parts(folder: Path) -> tuple[dict[str, FluxPart], FluxWidths]:
    config = folder / "transformer" / "config.json"
    widths = FluxWidths()
    if config.is_file():
        values = json.loads(config.read_text(encoding="utf-8"))
        widths = FluxWidths(clip=int(values.get("pooled_projection_dim", widths.clip)),
                            t5=int(values.get("joint_attention_dim", widths.t5)))
    parts = {kind: FluxPart(kind, folder / sub, "", "diffusers", True, folder.name)
             for kind, sub in _DIFFUSERS_FOLDERS.items() if (folder / sub / "config.json").is_file()}
    return parts, widths


def _as_list(folders: Path | Sequence[Path]) -> list[Path]:
    return [folders] if isinstance(folders, Path) else list(folders)


def _find_chosen(name: str, files: Sequence[PartFile]) -> PartFile:
    if looks_like_path(name):
        raise UnusablePartError("", f"{name!r} is a file path; name a file in {TEXT_ENCODER_FOLDER}/ or {VAE_FOLDER}/ "
                                "by its name (\"t5xxl_fp16.safetensors\") instead")
    wanted = name.strip().replace("\\", "/")
    for match in (lambda f: f.name == wanted, lambda f: Path(f.name).name == wanted,
                  lambda f: Path(f.name).stem == wanted or f.name.rsplit(".", 1)[0] == wanted):
        hits = [file for file in files if match(file)]
        if hits:
            return hits[0]
    raise UnusablePartError("", f"no file named {name!r} in {TEXT_ENCODER_FOLDER}/ or {VAE_FOLDER}/; "
                            "pick one of the files there")


def _chosen_by_kind(chosen: Sequence[str], files: Sequence[PartFile]) -> dict[str, PartFile]:
    picked: dict[str, PartFile] = {}
    for name in chosen:
        file = _find_chosen(name, files)
        if file.kind is None:
            raise UnusablePartError("", f"{file.name} is {file.what}, which FLUX.1 cannot use; choose a CLIP-L or "
                                    "T5-XXL text encoder or a 16-channel FLUX VAE")
        if file.kind in picked and picked[file.kind].name != file.name:
            what = _NEEDS[file.kind][0]
            raise UnusablePartError(file.kind, f"{picked[file.kind].name} and {file.name} are both chosen as "
                                    f"{what}; FLUX.1 takes one, so choose only one of them")
        picked[file.kind] = file
    return picked


def _settle(kind: str, picked: dict[str, PartFile], files: Sequence[PartFile]) -> FluxPart:
    what, put, folder = _NEEDS[kind]
    if kind in picked:
        file = picked[kind]
        return FluxPart(kind, file.path, file.prefix, "single_file", False, file.name)
    candidates = [file for file in files if file.kind == kind]
    if len(candidates) == 1:
        file = candidates[0]
        return FluxPart(kind, file.path, file.prefix, "single_file", False, file.name)
    if not candidates:
        raise MissingPartError(kind, f"FLUX.1 needs {what}: put {put} in {folder}/")
    names = [file.name for file in candidates]
    raise AmbiguousPartError(kind, f"FLUX.1 needs {what} and {folder}/ has {len(names)} that fit: "
                             f"{', '.join(names)}; {_HOW_TO_PICK}", names)


def choose_flux_parts(checkpoint: Path, text_encoder_dir: Path | Sequence[Path], vae_dir: Path | Sequence[Path],
                      chosen: Sequence[str] = (), widths: FluxWidths | None = None) -> FluxParts:
    """Settle FLUX.1's CLIP-L, T5-XXL and VAE for ``checkpoint`` (module docstring: the rules).

    Args:
        checkpoint: the FLUX checkpoint file (transformer-only or all-in-one) or diffusers folder.
        text_encoder_dir, vae_dir: the part folders (``models/text_encoder``, ``models/VAE``), or
            lists of them; only file headers are read.
        chosen: Forge's ``forge_additional_modules``: names of files in those folders (the path
            under the folder, the file name, or the name without its extension).
        widths: the encoder widths the transformer takes, for a caller that read them itself (a
            GGUF transformer's tensor shapes); by default read from the checkpoint.

    Raises:
        MissingPartError: a part is neither embedded, chosen nor in its folder.
        AmbiguousPartError: several files fit a part and none is chosen.
        UnusablePartError: a chosen name matches no file, a file FLUX.1 cannot use, or two
            chosen files of one kind.
        ModelFileError: the checkpoint itself is broken.
    """
    embedded, found_widths = embedded_parts(Path(checkpoint))
    widths = widths or found_widths
    files: list[PartFile] = []
    picked: dict[str, PartFile] = {}
    if len(embedded) < len(_NEEDS):  # the folders (and the choice) matter only for a part not embedded
        files = scan_part_files([*_as_list(text_encoder_dir), *_as_list(vae_dir)], widths)
        picked = _chosen_by_kind(chosen, files)
    settled = {kind: embedded.get(kind) or _settle(kind, picked, files) for kind in _NEEDS}
    return FluxParts(clip_l=settled[CLIP_L], t5xxl=settled[T5XXL], vae=settled[VAE])


def load_part(part: FluxPart, dtype: torch.dtype, device: torch.device | str = "cpu") -> Any:
    """Load one settled part, whatever its layout.

    Args:
        dtype: the compute dtype (the CLIP-L and VAE weights are kept in it too; an fp8 T5 file
            keeps its fp8 weights, see ``t5.load_t5_encoder``).

    Returns:
        ``CLIPTextModel`` (clip_l), ``T5EncoderModel`` (t5xxl) or ``AutoencoderKL`` (vae).

    Raises:
        ModelFileError: the file is broken or is not that part after all.
    """
    if part.layout == "diffusers":
        folder_loaders = {CLIP_L: load_clip_l_folder, T5XXL: load_t5_encoder_folder, VAE: load_flux_vae_folder}
        return folder_loaders[part.kind](part.path, dtype=dtype, device=device)
    file_loaders = {CLIP_L: load_clip_l, T5XXL: load_t5_encoder, VAE: load_flux_vae}
    return file_loaders[part.kind](part.path, part.prefix, dtype=dtype, device=device)


def load_text_encoders(parts: FluxParts, dtype: torch.dtype, device: torch.device | str = "cpu") -> FluxTextEncoders:
    """CLIP-L and T5-XXL of ``parts`` with the shipped tokenizers, ready to ``encode`` prompts."""
    return FluxTextEncoders(clip_l=load_part(parts.clip_l, dtype, device), clip_tokenizer=build_flux_clip_tokenizer(),
                            t5=load_part(parts.t5xxl, dtype, device), t5_tokenizer=build_t5_tokenizer())
