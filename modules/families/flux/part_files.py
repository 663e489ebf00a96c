"""What a file in ``models/text_encoder/`` or ``models/VAE/`` is, from its header alone.

A file is classified by its key names and shapes, never by its name: CLIP-L and CLIP-G text
encoders (``text_model.*``, told apart by width), T5 encoders (``encoder.block.*``; a T5-XXL
has ``d_model`` 4096 and the 32,128-row T5 v1.1 vocabulary), autoencoders by their latent
channels (16 for FLUX.1; SD3's autoencoder has the same shapes and is not told apart, as in
Forge; 4 for SD1.x/SDXL). Widths are compared with what the FLUX transformer expects, which
the caller reads from the transformer's own shapes (``FluxWidths``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modules.families.flux.autoencoder import FLUX_LATENT_CHANNELS, VAE_PROBE_KEY
from modules.families.flux.t5 import T5_PROBE_KEY
from modules.families.flux.text_encoders import CLIP_PROBE_KEY
from modules.families.flux.weights import find_prefix
from modules.models.files import SAFETENSORS_SUFFIXES, ModelFileError, public_text, read_safetensors_header
from modules.models.walk import walk_files

__all__ = ["CLIP_L", "T5XXL", "VAE", "FluxWidths", "PartFile", "classify_keys", "scan_part_files",
           "widths_from_transformer_keys"]

CLIP_L, T5XXL, VAE = "clip_l", "t5xxl", "vae"
_T5_VOCAB = range(32100, 32200)  # 32,100 tokens, rounded up to 32,128 rows in Google's checkpoints
_CLIP_G_WIDTH = 1280
_SD_LATENT_CHANNELS = 4


@dataclass(frozen=True)
class FluxWidths:
    """The encoder widths a FLUX transformer takes: CLIP-L's pooled width and T5's ``d_model``."""

    clip: int = 768
    t5: int = 4096


# Where each width shows in the transformer's keys: BFL's layout, then diffusers'; [out, in].
_CLIP_WIDTH_KEYS = ("vector_in.in_layer.weight", "time_text_embed.text_embedder.linear_1.weight")
_T5_WIDTH_KEYS = ("txt_in.weight", "context_embedder.weight")


def widths_from_transformer_keys(shapes: Mapping[str, Sequence[int]]) -> FluxWidths:
    """The widths a transformer's header asks for (any key prefix); FLUX.1's real ones where absent."""
    default = FluxWidths()

    def width(suffixes: tuple[str, ...], fallback: int) -> int:
        for suffix in suffixes:
            prefix = find_prefix(shapes, suffix)
            if prefix is not None and len(shapes[prefix + suffix]) == 2:
                return int(shapes[prefix + suffix][1])
        return fallback

    return FluxWidths(clip=width(_CLIP_WIDTH_KEYS, default.clip), t5=width(_T5_WIDTH_KEYS, default.t5))


@dataclass(frozen=True)
class PartFile:
    """One file of the part folders, classified.

    Attributes:
        name: its name under its folder, "/"-separated (what the user picks it by).
        path: the file.
        kind: ``CLIP_L``, ``T5XXL`` or ``VAE`` when FLUX.1 can use it; otherwise None.
        what: what it is, in words ("a CLIP-G text encoder", "an SD1.x/SDXL VAE (4 latent channels)").
        prefix: the key prefix of the part inside the file ("" for most).
    """

    name: str
    path: Path
    kind: str | None
    what: str
    prefix: str = ""


def _clip_kind(shapes: Mapping[str, Sequence[int]], widths: FluxWidths) -> tuple[str, str, str] | None:
    prefix = find_prefix(shapes, CLIP_PROBE_KEY)
    if prefix is None:
        return None
    width = int(shapes[prefix + CLIP_PROBE_KEY][1])
    if width == widths.clip:
        return CLIP_L, "a CLIP-L text encoder", prefix
    label = "a CLIP-G text encoder" if width == _CLIP_G_WIDTH else f"a CLIP text encoder of width {width}"
    return "", label, prefix


def _t5_kind(shapes: Mapping[str, Sequence[int]], widths: FluxWidths) -> tuple[str, str, str] | None:
    prefix = find_prefix(shapes, T5_PROBE_KEY)
    if prefix is None:
        return None
    embedding = shapes.get(prefix + "shared.weight") or shapes.get(prefix + "encoder.embed_tokens.weight")
    if not embedding or len(embedding) != 2:
        return "", "a T5 encoder without its token embedding", prefix
    vocab, width = int(embedding[0]), int(embedding[1])
    if vocab in _T5_VOCAB and width == widths.t5:
        return T5XXL, "a T5-XXL text encoder", prefix
    return "", f"a T5-family encoder (vocabulary {vocab}, width {width}), not T5-XXL", prefix


def _vae_kind(shapes: Mapping[str, Sequence[int]]) -> tuple[str, str, str] | None:
    prefix = find_prefix(shapes, VAE_PROBE_KEY)
    if prefix is None or len(shapes[prefix + VAE_PROBE_KEY]) != 4:
        return None
    channels = int(shapes[prefix + VAE_PROBE_KEY][1])
    if channels == FLUX_LATENT_CHANNELS:
        return VAE, "a FLUX VAE (16 latent channels)", prefix
    if channels == _SD_LATENT_CHANNELS:
        return "", "an SD1.x/SDXL VAE (4 latent channels)", prefix
    return "", f"a VAE with {channels} latent channels", prefix


def classify_keys(shapes: Mapping[str, Sequence[int]],
                  widths: FluxWidths = FluxWidths()) -> list[tuple[str, str, str]]:
    """Every part a header holds, as ``(kind, what, prefix)``; ``kind`` is "" for a part FLUX
    cannot use. An all-in-one checkpoint yields three; a text encoder or VAE file one."""
    found = [_clip_kind(shapes, widths), _t5_kind(shapes, widths), _vae_kind(shapes)]
    return [part for part in found if part is not None]


def _shapes(header: Any) -> dict[str, tuple[int, ...]]:
    return {key: tuple(entry["shape"]) for key, entry in header.tensors.items()}


def _classify_file(name: str, path: Path, widths: FluxWidths) -> PartFile:
    try:
        parts = classify_keys(_shapes(read_safetensors_header(path)), widths)
    except ModelFileError as error:
        return PartFile(name, path, None, f"unreadable: {public_text(error.detail)}")
    usable = [part for part in parts if part[0]]
    if len(parts) == 1 or (parts and not usable):
        kind, what, prefix = parts[0]
        return PartFile(name, path, kind or None, what, prefix)
    if len(usable) == 1:
        kind, what, prefix = usable[0]
        return PartFile(name, path, kind, what, prefix)
    return PartFile(name, path, None, "a checkpoint holding several parts" if parts else "not a text encoder or VAE")


def scan_part_files(folders: Sequence[Path], widths: FluxWidths = FluxWidths()) -> list[PartFile]:
    """Classify every safetensors file under ``folders`` (subfolders too), reading headers only.

    Files appear once, in folder order, each named by its path under its folder.
    """
    files: list[PartFile] = []
    for folder in folders:
        for found in walk_files(folder, SAFETENSORS_SUFFIXES):
            if not found.is_folder:
                files.append(_classify_file(found.relative, found.path, widths))
    return files
