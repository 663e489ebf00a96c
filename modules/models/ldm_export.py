"""Export diffusers Stable Diffusion pipelines as one original LDM / A1111 checkpoint.

diffusers reads LDM single files (``from_single_file``) but cannot write them; this module
is the inverse of ``diffusers.loaders.single_file_utils`` for SD1.x, SD2.x and SDXL
(base, refiner, inpainting):

* UNet ``UNet2DConditionModel`` -> ``model.diffusion_model.`` (``input_blocks`` /
  ``middle_block`` / ``output_blocks``, ResNet sub-modules renamed, SDXL
  ``add_embedding`` -> ``label_emb.0.{0,2}``).
* VAE ``AutoencoderKL`` -> ``first_stage_model.`` (decoder up blocks in reverse order,
  mid-attention linears stored as 1x1 convs).
* Text encoders -> see :mod:`modules.models.ldm_export_text`.

The key mapping is table driven: for each component a dict from a diffusers module prefix
to ``(LDM prefix, sub-module renames)`` is built from its config, and every key of the
state dict must match exactly one prefix (unknown keys raise ``KeyError`` rather than
being dropped silently).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from modules.models.ldm_export_text import (
    TextLayout,
    clip_to_ldm,
    config_value,
    open_clip_to_ldm,
    text_encoder_plan,
)

__all__ = [
    "CONTROLNET_PREFIX",
    "UNET_PREFIX",
    "VAE_PREFIX",
    "clip_to_ldm",
    "controlnet_to_ldm",
    "open_clip_to_ldm",
    "pipeline_to_ldm",
    "save_ldm_checkpoint",
    "unet_to_ldm",
    "vae_to_ldm",
]

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CONTROLNET_PREFIX = "control_model."
# diffusers module prefix -> (LDM prefix, renames of the module path below the prefix)
PrefixTable = dict[str, tuple[str, Mapping[str, str]]]

_NO_RENAME: Mapping[str, str] = {}
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_UNET_FIXED: PrefixTable = {
    "conv_in.": ("input_blocks.0.0.", _NO_RENAME),
    "time_embedding.linear_1.": ("time_embed.0.", _NO_RENAME),
    "time_embedding.linear_2.": ("time_embed.2.", _NO_RENAME),
    "add_embedding.linear_1.": ("label_emb.0.0.", _NO_RENAME),
    "add_embedding.linear_2.": ("label_emb.0.2.", _NO_RENAME),
    "class_embedding.linear_1.": ("label_emb.0.0.", _NO_RENAME),
    "class_embedding.linear_2.": ("label_emb.0.2.", _NO_RENAME),
    "class_embedding.": ("label_emb.", _NO_RENAME),
    "mid_block.resnets.0.": ("middle_block.0.", _UNET_RESNET),
    "mid_block.attentions.0.": ("middle_block.1.", _NO_RENAME),
    "mid_block.resnets.1.": ("middle_block.2.", _UNET_RESNET),
    "conv_norm_out.": ("out.0.", _NO_RENAME),
    "conv_out.": ("out.2.", _NO_RENAME),
}
_VAE_FIXED: PrefixTable = {
    "quant_conv.": ("quant_conv.", _NO_RENAME),
    "post_quant_conv.": ("post_quant_conv.", _NO_RENAME),
}
_VAE_ATTENTION_WEIGHTS = tuple(f".mid.attn_1.{name}.weight" for name in ("q", "k", "v", "proj_out"))


def _per_block(value: int | Sequence[int], blocks: int) -> list[int]:
    """Expands an int-or-sequence config field (e.g. ``layers_per_block``) to one per block.

    Args:
        value: The config value.
        blocks: Number of blocks.

    Returns:
        A list of ``blocks`` ints.
    """
    if isinstance(value, int):
        return [value] * blocks
    if len(value) != blocks:
        raise ValueError(f"expected {blocks} per-block values, got {list(value)}")
    return [int(v) for v in value]


def _unet_down_table(layers: Sequence[int]) -> PrefixTable:
    """Maps ``down_blocks`` to LDM ``input_blocks`` (index 0 is ``conv_in``).

    Args:
        layers: ResNets per down block.

    Returns:
        The prefix table of the encoder half of the UNet.
    """
    table: PrefixTable = {}
    index = 1
    for block, count in enumerate(layers):
        for layer in range(count):
            table[f"down_blocks.{block}.resnets.{layer}."] = (f"input_blocks.{index}.0.", _UNET_RESNET)
            table[f"down_blocks.{block}.attentions.{layer}."] = (f"input_blocks.{index}.1.", _NO_RENAME)
            index += 1
        if block < len(layers) - 1:
            table[f"down_blocks.{block}.downsamplers.0.conv."] = (f"input_blocks.{index}.0.op.", _NO_RENAME)
            index += 1
    return table


def _unet_up_table(layers: Sequence[int], state_dict: Mapping[str, Tensor]) -> PrefixTable:
    """Maps ``up_blocks`` to LDM ``output_blocks``.

    Each up block has ``layers_per_block + 1`` ResNets; its upsampler goes into the last
    output block at position 2 when that block has an attention, else at position 1.

    Args:
        layers: ``layers_per_block`` of the down blocks, in down order.
        state_dict: UNet state dict (to see which up blocks have attentions).

    Returns:
        The prefix table of the decoder half of the UNet.
    """
    table: PrefixTable = {}
    index = 0
    for block, count in enumerate(reversed(layers)):
        has_attention = any(key.startswith(f"up_blocks.{block}.attentions.") for key in state_dict)
        for layer in range(count + 1):
            table[f"up_blocks.{block}.resnets.{layer}."] = (f"output_blocks.{index}.0.", _UNET_RESNET)
            table[f"up_blocks.{block}.attentions.{layer}."] = (f"output_blocks.{index}.1.", _NO_RENAME)
            index += 1
        slot = 2 if has_attention else 1
        table[f"up_blocks.{block}.upsamplers.0.conv."] = (f"output_blocks.{index - 1}.{slot}.conv.", _NO_RENAME)
    return table


def _vae_table(blocks: int, layers: int) -> PrefixTable:
    """Builds the AutoencoderKL prefix table.

    Args:
        blocks: Number of encoder (= decoder) levels.
        layers: ``layers_per_block``; the decoder has one ResNet more per level.

    Returns:
        The prefix table; decoder ``up_blocks.i`` is LDM ``up.{blocks - 1 - i}``.
    """
    table = dict(_VAE_FIXED)
    for side in ("encoder", "decoder"):
        for name in ("conv_in", "conv_out"):
            table[f"{side}.{name}."] = (f"{side}.{name}.", _NO_RENAME)
        table[f"{side}.conv_norm_out."] = (f"{side}.norm_out.", _NO_RENAME)
        table[f"{side}.mid_block.resnets.0."] = (f"{side}.mid.block_1.", _VAE_RESNET)
        table[f"{side}.mid_block.resnets.1."] = (f"{side}.mid.block_2.", _VAE_RESNET)
        table[f"{side}.mid_block.attentions.0."] = (f"{side}.mid.attn_1.", _VAE_ATTENTION)
    for level in range(blocks):
        down, up, ldm_up = f"encoder.down_blocks.{level}.", f"decoder.up_blocks.{level}.", blocks - 1 - level
        for layer in range(layers):
            table[f"{down}resnets.{layer}."] = (f"encoder.down.{level}.block.{layer}.", _VAE_RESNET)
        table[f"{down}downsamplers.0.conv."] = (f"encoder.down.{level}.downsample.conv.", _NO_RENAME)
        for layer in range(layers + 1):
            table[f"{up}resnets.{layer}."] = (f"decoder.up.{ldm_up}.block.{layer}.", _VAE_RESNET)
        table[f"{up}upsamplers.0.conv."] = (f"decoder.up.{ldm_up}.upsample.conv.", _NO_RENAME)
    return table


def _remap(state_dict: Mapping[str, Tensor], table: PrefixTable, prefix: str) -> dict[str, Tensor]:
    """Renames every key through the longest matching diffusers module prefix.

    Args:
        state_dict: diffusers state dict.
        table: Prefix table (diffusers prefix -> LDM prefix, sub-module renames).
        prefix: Checkpoint prefix prepended to every LDM key.

    Returns:
        The renamed tensors (same tensor objects).

    Raises:
        KeyError: Some keys match no prefix (an unsupported architecture feature).
    """
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, tensor in state_dict.items():
        parts = key.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            head = ".".join(parts[:cut]) + "."
            if head in table:
                ldm_head, renames = table[head]
                module, _, leaf = key[len(head):].rpartition(".")
                module = renames.get(module, module)
                out[prefix + ldm_head + (f"{module}.{leaf}" if module else leaf)] = tensor
                break
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(f"no LDM mapping for {len(unknown)} keys, e.g. {unknown[:5]}")
    return out


def unet_to_ldm(
    state_dict: Mapping[str, Tensor], config: Mapping[str, Any], prefix: str = UNET_PREFIX
) -> dict[str, Tensor]:
    """Converts a ``UNet2DConditionModel`` state dict to the LDM ``openaimodel`` layout.

    Supports SD1.x/SD2.x/SDXL UNets (conv or linear transformer projections, any int or
    per-block ``layers_per_block``, any ``in_channels``, ``text_time`` add-embedding and
    ``projection``/``timestep`` class embeddings).

    Args:
        state_dict: The UNet's state dict.
        config: The UNet's config (``unet.config``); uses ``down_block_types`` and
            ``layers_per_block``.
        prefix: Prefix of every output key.

    Returns:
        ``{prefix + ldm_key: tensor}``, e.g. ``model.diffusion_model.input_blocks.0.0.weight``.

    Raises:
        KeyError: The state dict has keys of an unsupported architecture feature.
    """
    blocks = len(config_value(config, "down_block_types"))
    layers = _per_block(config_value(config, "layers_per_block"), blocks)
    table = {**_UNET_FIXED, **_unet_down_table(layers), **_unet_up_table(layers, state_dict)}
    return _remap(state_dict, table, prefix)


def _controlnet_table(hint_blocks: int) -> PrefixTable:
    """The parts a ControlNet adds to the UNet encoder: the hint encoder and the zero convolutions."""
    table: PrefixTable = {
        "controlnet_cond_embedding.conv_in.": ("input_hint_block.0.", _NO_RENAME),
        "controlnet_cond_embedding.conv_out.": (f"input_hint_block.{2 * hint_blocks + 2}.", _NO_RENAME),
        "controlnet_mid_block.": ("middle_block_out.0.", _NO_RENAME),
    }
    for index in range(hint_blocks):
        table[f"controlnet_cond_embedding.blocks.{index}."] = (f"input_hint_block.{2 * index + 2}.", _NO_RENAME)
    return table


def controlnet_to_ldm(
    state_dict: Mapping[str, Tensor], config: Mapping[str, Any], prefix: str = CONTROLNET_PREFIX
) -> dict[str, Tensor]:
    """Converts a ``ControlNetModel`` state dict to the original ControlNet layout
    (``control_model.input_blocks``, ``zero_convs.i.0``, ``input_hint_block.k``,
    ``middle_block_out.0``), which ``diffusers``' ``convert_controlnet_checkpoint`` reads back.

    Raises:
        KeyError: The state dict has keys of an unsupported architecture feature.
    """
    blocks = len(config_value(config, "down_block_types"))
    layers = _per_block(config_value(config, "layers_per_block"), blocks)
    zero_convs: PrefixTable = {f"controlnet_down_blocks.{i}.": (f"zero_convs.{i}.0.", _NO_RENAME)
                               for i in range(1 + sum(layers) + blocks - 1)}
    hint_blocks = len({key.split(".")[2] for key in state_dict if key.startswith("controlnet_cond_embedding.blocks.")})
    table = {**_UNET_FIXED, **_unet_down_table(layers), **zero_convs, **_controlnet_table(hint_blocks)}
    return _remap(state_dict, table, prefix)


def vae_to_ldm(
    state_dict: Mapping[str, Tensor], config: Mapping[str, Any], prefix: str = VAE_PREFIX
) -> dict[str, Tensor]:
    """Converts an ``AutoencoderKL`` state dict to the LDM ``first_stage_model`` layout.

    Args:
        state_dict: The VAE's state dict.
        config: The VAE's config (``vae.config``); uses ``down_block_types`` and
            ``layers_per_block``.
        prefix: Prefix of every output key.

    Returns:
        ``{prefix + ldm_key: tensor}``; mid-attention q/k/v/proj_out weights are reshaped
        from ``[C, C]`` to LDM's 1x1 conv ``[C, C, 1, 1]``.

    Raises:
        KeyError: The state dict has keys this layout cannot hold.
    """
    blocks = len(config_value(config, "down_block_types"))
    table = _vae_table(blocks, int(config_value(config, "layers_per_block")))
    out = _remap(state_dict, table, prefix)
    for key, tensor in out.items():
        if key.endswith(_VAE_ATTENTION_WEIGHTS) and tensor.ndim == 2:
            out[key] = tensor.reshape(*tensor.shape, 1, 1)
    return out


def _unshared(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Detaches, makes contiguous, and copies any tensor whose storage was already used.

    Args:
        state_dict: Tensors that may be views of one another.

    Returns:
        Tensors safetensors accepts (no two share storage).

    Raises:
        ValueError: A tensor is on the ``meta`` device (weights never loaded).
    """
    out: dict[str, Tensor] = {}
    seen: set[tuple[str, int]] = set()
    for key, tensor in state_dict.items():
        if tensor.is_meta:
            raise ValueError(f"{key} is on the meta device (weights were never loaded)")
        tensor = tensor.detach().contiguous()
        storage = (str(tensor.device), tensor.untyped_storage().data_ptr())
        if storage in seen:
            tensor = tensor.clone()
        seen.add(storage)
        out[key] = tensor
    return out


def pipeline_to_ldm(pipeline: Any, text_layout: TextLayout | None = None) -> dict[str, Tensor]:
    """Converts a Stable Diffusion pipeline into one LDM single-file state dict.

    SD1.x / SD2.x / SDXL (and their inpainting variants, and the SDXL refiner) are told
    apart by which components exist and the text encoder's config (rule in
    :func:`modules.models.ldm_export_text.text_encoder_plan`). Components that are
    ``None`` or absent are skipped.

    Args:
        pipeline: A diffusers pipeline with ``unet``, ``vae``, ``text_encoder`` and
            optionally ``text_encoder_2``.
        text_layout: ``"clip"`` (SD1.x) or ``"open_clip"`` (SD2.x) to force the layout of
            a single text encoder; ``None`` decides from its ``hidden_act``.

    Returns:
        Contiguous tensors, none sharing memory, on the components' devices and dtypes.
    """
    out: dict[str, Tensor] = {}
    unet = getattr(pipeline, "unet", None)
    if unet is not None:
        out.update(unet_to_ldm(unet.state_dict(), unet.config))
    vae = getattr(pipeline, "vae", None)
    if vae is not None:
        out.update(vae_to_ldm(vae.state_dict(), vae.config))
    for prefix, encoder, layout in text_encoder_plan(pipeline, text_layout):
        if layout == "clip":
            out.update(clip_to_ldm(encoder.state_dict(), prefix))
        else:
            out.update(open_clip_to_ldm(encoder.state_dict(), prefix, encoder.config))
    return _unshared(out)


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Validates safetensors metadata (string keys and values only).

    Args:
        metadata: User metadata or ``None``.

    Returns:
        ``{"format": "pt", **metadata}``.
    """
    result = {"format": "pt"}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"safetensors metadata must be str -> str, got {key!r}: {type(value).__name__}")
        result[key] = value
    return result


def save_ldm_checkpoint(
    pipeline: Any,
    path: str | Path,
    dtype: torch.dtype | None = None,
    metadata: Mapping[str, str] | None = None,
    text_layout: TextLayout | None = None,
) -> Path:
    """Writes ``pipeline`` as one LDM / A1111 ``.safetensors`` file, atomically.

    The file is written to a temporary file in the target directory and moved into place
    with ``os.replace``, so readers never see a partial checkpoint.

    Args:
        pipeline: A diffusers SD1.x / SD2.x / SDXL pipeline.
        path: Destination ``.safetensors`` path; its directory is created if missing.
        dtype: Cast floating-point tensors to this dtype (e.g. ``torch.float16``);
            ``None`` keeps the components' dtypes.
        metadata: Extra safetensors header metadata (``str`` -> ``str``); ``format=pt``
            is always set.
        text_layout: See :func:`pipeline_to_ldm`.

    Returns:
        The written path.
    """
    from safetensors.torch import save_file

    path = Path(path)
    header = _check_metadata(metadata)
    tensors = {
        key: tensor.to(device="cpu", dtype=dtype if dtype is not None and tensor.is_floating_point() else None)
        for key, tensor in pipeline_to_ldm(pipeline, text_layout).items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(_unshared(tensors), tmp, metadata=header)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
