"""Recognising a FLUX.1 transformer from tensor names and shapes, in every layout users have.

Reads safetensors headers and GGUF tensor tables only (no tensor data), so scanning a folder of
24 GB files is cheap. Layouts:

- ``bfl``: BFL's transformer-only files (``flux1-dev.safetensors``), bare or under a prefix
  (``model.diffusion_model.`` in ComfyUI/Forge all-in-one checkpoints, ``diffusion_model.``).
- ``diffusers``: ``FluxTransformer2DModel`` names, as one file or a diffusers folder's
  ``transformer/`` subfolder (possibly sharded into several files).
- ``gguf``: a ``.gguf`` file (city96's FLUX conversions) with BFL names.

dev and schnell differ by one module: dev is guidance-distilled and has ``guidance_in``
(diffusers: ``time_text_embed.guidance_embedder``); schnell is timestep-distilled and has none.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch

from modules.families.flux.transformer_keys import (
    MLP_RATIO,
    FluxTransformerConfig,
    axes_dims_for_head_dim,
    bfl_key_rules,
    block_indices,
)
from modules.models.files import SAFETENSORS_SUFFIXES, ModelFileError, read_safetensors_header

__all__ = [
    "ANCHORS",
    "BFL_PREFIXES",
    "LAYOUTS",
    "FluxFileError",
    "FluxTransformerFile",
    "TensorInfo",
    "describe_non_flux",
    "detect_flux_transformer",
    "read_exactly",
    "read_tensor_table",
]

BFL, DIFFUSERS, GGUF = "bfl", "diffusers", "gguf"
LAYOUTS = (BFL, DIFFUSERS, GGUF)
#: Prefixes BFL names appear under, longest first ("" = BFL's own transformer-only file).
BFL_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "")
GGUF_SUFFIX = ".gguf"
# Any dotted prefix, then the first block of either naming scheme.
_BLOCK = re.compile(r"^((?:[\w-]+\.)*?)(double_blocks|single_transformer_blocks|transformer_blocks)\.\d+\.")
ANCHORS = {
    BFL: ("img_in.weight", "vector_in.in_layer.weight"),
    DIFFUSERS: ("x_embedder.weight", "time_text_embed.text_embedder.linear_1.weight"),
}


class FluxFileError(ModelFileError):
    """A file given as a FLUX.1 transformer cannot be loaded as one.

    ``kind`` adds to ``ModelFileError``'s: "not_flux" (no FLUX transformer in it), "lora", "vae",
    "incomplete" (a block or tensor missing), "unsupported" (a shape or type we cannot load),
    "corrupt" (a GGUF file that does not parse).
    """


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the file stores it. ``dtype``: the safetensors dtype name ("BF16", "F8_E4M3")
    or the GGUF type name ("Q8_0", "F16"); ``shape``: the logical (PyTorch-order) shape."""

    shape: tuple[int, ...]
    dtype: str
    file: Path


@dataclass(frozen=True)
class FluxTransformerFile:
    """A recognised FLUX.1 transformer: where it is, how it is stored and the model it builds.

    Attributes:
        path: what was given (a file, a diffusers folder or its ``transformer/`` folder).
        files: the files holding the tensors (several for a sharded diffusers folder).
        layout: "bfl", "diffusers" or "gguf".
        prefix: what stands before every transformer name ("model.diffusion_model." ...), or "".
        variant: "dev" (has distilled guidance) or "schnell".
        storage_dtype: the dtype most of the bytes are stored in ("BF16", "F8_E4M3", "Q4_K", ...).
        config: the ``FluxTransformer2DModel`` arguments read from the shapes.
        tensors: unprefixed name -> ``TensorInfo``, only the transformer's own tensors.
    """

    path: Path
    files: tuple[Path, ...]
    layout: str
    prefix: str
    variant: str
    storage_dtype: str
    config: FluxTransformerConfig
    tensors: Mapping[str, TensorInfo]

    @property
    def guidance_distilled(self) -> bool:
        return self.config.guidance_embeds


def detect_flux_transformer(path: Path | str, prefix: str | None = None) -> FluxTransformerFile | None:
    """Recognise a FLUX.1 transformer at ``path`` from its tensor names and shapes only.

    ``path``: a .safetensors/.sft or .gguf file, a diffusers folder (its ``transformer/`` is read)
    or a ``transformer/`` folder. ``prefix``: look only under this prefix; by default the known
    ones are tried (``model.diffusion_model.``, ``diffusion_model.``, none).

    Returns:
        None when the file holds no FLUX.1 transformer (a LoRA, a VAE, an SD checkpoint...).

    Raises:
        FluxFileError: the file is unreadable (truncated, corrupt), or is a FLUX transformer
            with a block or tensor missing or with shapes no FLUX.1 model has.
    """
    path = Path(path)
    tensors = read_tensor_table(path)
    found = _find_layout(tensors, prefix)
    if found is None:
        return None
    layout, found_prefix = found
    own = {name[len(found_prefix):]: info for name, info in tensors.items() if name.startswith(found_prefix)}
    if layout == BFL and path.suffix.lower() == GGUF_SUFFIX:
        layout = GGUF
    config = _config_from_shapes(path, own, layout)
    _check_complete(path, own, config, layout, found_prefix)
    files = tuple(sorted({info.file for info in own.values()}))
    return FluxTransformerFile(path=path, files=files, layout=layout, prefix=found_prefix,
                               variant="dev" if config.guidance_embeds else "schnell",
                               storage_dtype=_main_dtype(own), config=config, tensors=own)


def read_tensor_table(path: Path) -> dict[str, TensorInfo]:
    """Every tensor's name, shape and stored dtype in ``path`` (a file or a folder), no data read.

    Raises:
        FluxFileError: missing, unreadable or truncated files, or a folder without weights.
    """
    if path.is_dir():
        folder = path / "transformer" if (path / "transformer").is_dir() else path
        return {name: info for file in _folder_files(path, folder) for name, info in _safetensors_table(file).items()}
    if path.suffix.lower() == GGUF_SUFFIX:
        from modules.families.flux.gguf_loading import read_gguf_table

        return read_gguf_table(path)
    return _safetensors_table(path)


def _folder_files(path: Path, folder: Path) -> list[Path]:
    """The weight files of a diffusers model folder: those its shard index lists, else the
    unsharded ``diffusion_pytorch_model.safetensors``, else every .safetensors file. A folder may
    also hold a variant (``diffusion_pytorch_model.fp16.safetensors``): that is never read too."""
    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            return sorted({folder / name for name in weight_map.values()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise FluxFileError(index, "corrupt", "is not a readable shard index (JSON with a weight_map); "
                                "re-download it") from None
    single = folder / "diffusion_pytorch_model.safetensors"
    files = [single] if single.is_file() else sorted(
        p for p in folder.iterdir() if p.suffix.lower() in SAFETENSORS_SUFFIXES)
    if not files:
        raise FluxFileError(path, "not_flux", f"has no .safetensors weights in {folder.name}/; a diffusers "
                            "FLUX folder keeps them in transformer/diffusion_pytorch_model*.safetensors")
    return files


def read_exactly(path: Path, handle: BinaryIO, buffer: torch.Tensor, name: str) -> None:
    """Fill ``buffer`` (a uint8 CPU tensor) from ``handle``'s position with plain reads (an
    unbuffered file may return short counts), so the bytes land once, in their final buffer.

    Raises:
        FluxFileError: the file ends first (kind "truncated").
    """
    view, filled = memoryview(buffer.numpy()), 0
    while filled < len(view):
        count = handle.readinto(view[filled:])
        if not count:
            raise FluxFileError(path, "truncated", f"is truncated: tensor {name!r} is cut short; re-download it")
        filled += count


def _safetensors_table(path: Path) -> dict[str, TensorInfo]:
    try:
        header = read_safetensors_header(path)
    except FluxFileError:
        raise
    except ModelFileError as error:
        raise FluxFileError(error.path, error.kind, error.detail) from None
    return {name: TensorInfo(tuple(entry["shape"]), entry["dtype"], path) for name, entry in header.tensors.items()}


def _find_layout(tensors: Mapping[str, object], prefix: str | None) -> tuple[str, str] | None:
    """(layout, prefix) of the first FLUX block name found under FLUX's anchor tensors, or None.

    Other transformers share block names (SD3's diffusers ``transformer_blocks``, Chroma's
    ``double_blocks``), so the anchors are FLUX's image input and pooled-text (CLIP) embedders,
    which those lack. LoRA files name the same blocks: a name with LoRA parts never counts.
    """
    prefixes = (prefix,) if prefix is not None else None
    seen: set[str] = set()
    for name in tensors:
        match = _BLOCK.match(name)
        if match is None or _is_lora_name(name) or match.group(1) in seen:
            continue
        seen.add(match.group(1))
        if prefixes is None or match.group(1) in prefixes:
            layout = BFL if match.group(2) == "double_blocks" else DIFFUSERS
            if all(match.group(1) + anchor in tensors for anchor in ANCHORS[layout]):
                return layout, match.group(1)
    for candidate in prefixes or BFL_PREFIXES:  # a model with no double blocks still has single ones
        if any(n.startswith(candidate + "single_blocks.") for n in tensors) and all(
                candidate + anchor in tensors for anchor in ANCHORS[BFL]):
            return BFL, candidate
    return None


def _is_lora_name(name: str) -> bool:
    return bool(re.search(r"lora[_.]|\.alpha$|\.dora_scale$", name))


def _shape(path: Path, tensors: Mapping[str, TensorInfo], name: str, rank: int) -> tuple[int, ...]:
    info = tensors.get(name)
    if info is None:
        raise FluxFileError(path, "incomplete", f"looks like a FLUX.1 transformer but has no {name!r} tensor; "
                            "the file is incomplete, re-download it")
    if len(info.shape) != rank:
        raise FluxFileError(path, "unsupported", f"has {name!r} of shape {list(info.shape)}; FLUX.1 has a "
                            f"{rank}-d tensor there")
    return info.shape


def _config_from_shapes(path: Path, tensors: Mapping[str, TensorInfo], layout: str) -> FluxTransformerConfig:
    """The model's arguments from the shapes of a few tensors (names per layout)."""
    if layout == DIFFUSERS:
        names = ("x_embedder.weight", "context_embedder.weight", "time_text_embed.text_embedder.linear_1.weight",
                 "proj_out.weight", "transformer_blocks", "single_transformer_blocks",
                 ".attn.norm_q.weight", "time_text_embed.guidance_embedder.linear_1.weight")
    else:
        names = ("img_in.weight", "txt_in.weight", "vector_in.in_layer.weight", "final_layer.linear.weight",
                 "double_blocks", "single_blocks", ".img_attn.norm.query_norm.scale",
                 "guidance_in.in_layer.weight")
    inner, in_channels = _shape(path, tensors, names[0], 2)
    joint_dim = _shape(path, tensors, names[1], 2)[1]
    pooled_dim = _shape(path, tensors, names[2], 2)[1]
    out_channels = _shape(path, tensors, names[3], 2)[0]
    doubles, singles = block_indices(tensors, names[4]), block_indices(tensors, names[5])
    if doubles:
        head_dim = _shape(path, tensors, f"{names[4]}.{doubles[0]}{names[6]}", 1)[0]
    else:
        single_norm = ".attn.norm_q.weight" if layout == DIFFUSERS else ".norm.query_norm.scale"
        head_dim = _shape(path, tensors, f"{names[5]}.{singles[0]}{single_norm}", 1)[0]
    if inner % head_dim or head_dim % 2:
        raise FluxFileError(path, "unsupported", f"has hidden width {inner} and head width {head_dim}, which "
                            "no FLUX.1 transformer has (the hidden width is heads x an even head width)")
    return FluxTransformerConfig(
        num_layers=_count(path, doubles, names[4]), num_single_layers=_count(path, singles, names[5]),
        attention_head_dim=head_dim, num_attention_heads=inner // head_dim, in_channels=in_channels,
        out_channels=out_channels, joint_attention_dim=joint_dim, pooled_projection_dim=pooled_dim,
        guidance_embeds=names[7] in tensors, axes_dims_rope=axes_dims_for_head_dim(head_dim))


def _count(path: Path, indices: list[int], block: str) -> int:
    """How many blocks: the indices must be 0..N-1; a gap is a missing block, named."""
    missing = sorted(set(range(indices[-1] + 1)) - set(indices)) if indices else []
    if missing:
        raise FluxFileError(path, "incomplete", f"is missing {block}.{missing[0]} (it has {len(indices)} of "
                            f"{indices[-1] + 1} {block}); the file is incomplete or was cut, re-download it")
    return len(indices)


def _check_complete(path: Path, tensors: Mapping[str, TensorInfo], config: FluxTransformerConfig,
                    layout: str, prefix: str) -> None:
    """Every tensor the model needs is present (names only; shapes are checked when loading)."""
    rules = bfl_key_rules(config)
    needed = {rule.target for rule in rules} if layout == DIFFUSERS else {rule.source for rule in rules}
    missing = sorted(needed - set(tensors))
    if missing:
        raise FluxFileError(path, "incomplete", f"is a FLUX.1 transformer missing {len(missing)} tensor(s), "
                            f"first {prefix + missing[0]!r}; the file is incomplete, re-download it")
    mlp = tensors["transformer_blocks.0.ff.net.0.proj.weight" if layout == DIFFUSERS
                  else "double_blocks.0.img_mlp.0.weight"].shape[0] if config.num_layers else None
    if mlp is not None and mlp != MLP_RATIO * config.inner_dim:
        raise FluxFileError(path, "unsupported", f"has an MLP {mlp} wide for hidden width {config.inner_dim}; "
                            f"FLUX.1's is {MLP_RATIO}x the hidden width")


def _main_dtype(tensors: Mapping[str, TensorInfo]) -> str:
    """The dtype holding the most elements (weights dominate; biases and norms are often wider)."""
    counts: dict[str, int] = {}
    for info in tensors.values():
        size = 1
        for dim in info.shape:
            size *= dim
        counts[info.dtype] = counts.get(info.dtype, 0) + size
    return max(counts, key=counts.__getitem__)


def describe_non_flux(path: Path, tensors: Mapping[str, TensorInfo]) -> FluxFileError:
    """The error for a file with no FLUX transformer in it, saying what it seems to be instead."""
    names = list(tensors)
    if any(_is_lora_name(name) for name in names):
        return FluxFileError(path, "lora", "is a LoRA, not a FLUX.1 transformer; put it in models/Lora and "
                             "use it from the prompt as <lora:name:1>")
    if any(re.match(r"^(?:\w+\.)*?(encoder\.down|decoder\.up)", name) for name in names):
        return FluxFileError(path, "vae", "is an autoencoder (VAE), not a FLUX.1 transformer; put it in "
                             "models/VAE (FLUX.1's is ae.safetensors)")
    return FluxFileError(path, "not_flux", "holds no FLUX.1 transformer (no double_blocks/single_blocks or "
                         "transformer_blocks tensors); put flux1-dev/flux1-schnell files in models/Stable-diffusion")
