"""FLUX.1 LoRA files in the key layouts users have, renamed to what diffusers' FluxPipeline loads.

Three layouts name the same low-rank pairs (``down``: (rank, in_features), ``up``: (out_features,
rank); the change to a layer's weight is ``scale * up @ down``, ``scale = alpha / rank``, Hu et
al. 2021):

- kohya/sd-scripts: ``lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight`` / ``.lora_up.weight``
  / ``.alpha`` (BFL module names with "_" for "."), ``lora_te1_text_model_encoder_layers_0_…`` for
  CLIP-L; ``lora_te3_`` (T5) too;
- BFL/ComfyUI: ``diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight`` / ``lora_B.weight``
  (or ``lora_down`` / ``lora_up`` with ``.alpha``), ``text_encoders.clip_l.transformer.…`` for CLIP-L;
- diffusers/peft: ``transformer.transformer_blocks.0.attn.to_q.lora_A.weight``,
  ``text_encoder.…``. diffusers loads these itself, so they pass through unchanged.

The first two name BFL's fused layers (``img_attn.qkv``, ``single_blocks.N.linear1`` = q, k, v and
the MLP input). A LoRA on a fused layer becomes one LoRA per diffusers layer: the same ``down``, and
``up``'s row range of that layer (rows are output features), so ``up_part @ down`` is exactly that
layer's rows of the fused change. The row ranges come from ``transformer_keys.bfl_key_rules``, the
map the transformer loader uses, so they fit every width (diffusers 0.42's own kohya converter
hard-codes FLUX.1's 3072/12288 widths and fails on others, ignores BFL files with ``lora_A`` names,
and drops CLIP-L's attention LoRAs). ``alpha / rank`` is folded into ``down``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from modules.families.flux.transformer_keys import FluxTransformerConfig, axes_dims_for_head_dim, bfl_key_rules

__all__ = ["FluxLoraConversion", "flux_lora_to_peft", "is_flux_lora", "transformer_config_of"]

#: Where a LoRA file's own name for one layer ends and the part of the pair begins.
_PARTS = {".lora_down.weight": "down", ".lora_A.weight": "down", ".lora_up.weight": "up",
          ".lora_B.weight": "up", ".alpha": "alpha"}
_KOHYA_TRANSFORMER = "lora_unet_"
#: BFL names under ComfyUI's and BFL's own prefixes, and peft's on a BFL model (fal's trainer).
_BFL_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "base_model.model.", "transformer.")
_KOHYA_CLIP = ("lora_te1_", "lora_te_")
_COMFY_CLIP = "text_encoders.clip_l.transformer."
#: T5-XXL LoRAs: FluxPipeline's loader does not take LoRAs for T5, so they stay unused.
_T5 = ("lora_te3_", "lora_te2_", "text_encoders.t5xxl.")
#: diffusers' own names: its loader reads them as they are.
_PEFT_PREFIXES = ("transformer.", "text_encoder.")
_FLUX_NAME = re.compile(r"(^|[._])(double|single)_(transformer_)?blocks[._]\d+[._]|^(transformer\.)?"
                        r"(single_)?transformer_blocks\.\d+\.|^lora_transformer_")


@dataclass
class _Pair:
    """One layer's LoRA tensors as read from the file."""

    down: torch.Tensor | None = None
    up: torch.Tensor | None = None
    alpha: torch.Tensor | None = None


@dataclass(frozen=True)
class _Target:
    """One diffusers linear layer a BFL layer's LoRA lands on: ``rows`` of the fused output."""

    module: str
    rows: tuple[int, int] | None
    swap_halves: bool


@dataclass
class FluxLoraConversion:
    """What ``flux_lora_to_peft`` made of a file.

    ``state``: peft names diffusers' ``FluxPipeline.load_lora_weights`` reads
    (``transformer.<module>.lora_A.weight`` (rank, in), ``.lora_B.weight`` (out, rank), and
    ``text_encoder.…``), plus diffusers-layout tensors passed through; ``converted``: how many
    layers were renamed; ``unused``: the file's names that fit no layer here (T5, DoRA scales,
    bias or norm differences), for a notice.
    """

    state: dict[str, torch.Tensor] = field(default_factory=dict)
    converted: int = 0
    unused: list[str] = field(default_factory=list)


def transformer_config_of(model: Any) -> FluxTransformerConfig | None:
    """The shape record of a loaded diffusers ``FluxTransformer2DModel``; None for anything else."""
    from diffusers import FluxTransformer2DModel

    if not isinstance(model, FluxTransformer2DModel):
        return None
    c = model.config
    return FluxTransformerConfig(
        num_layers=c.num_layers, num_single_layers=c.num_single_layers, attention_head_dim=c.attention_head_dim,
        num_attention_heads=c.num_attention_heads, in_channels=c.in_channels,
        out_channels=c.out_channels or c.in_channels, joint_attention_dim=c.joint_attention_dim,
        pooled_projection_dim=c.pooled_projection_dim, guidance_embeds=c.guidance_embeds,
        axes_dims_rope=tuple(c.axes_dims_rope) or axes_dims_for_head_dim(c.attention_head_dim))


def is_flux_lora(names: Iterable[str]) -> bool:
    """Whether tensor ``names`` (a LoRA file's, header only) are a FLUX.1 LoRA: they name FLUX's
    double/single blocks in any layout above (also XLabs' and ai-toolkit's)."""
    return any(_FLUX_NAME.search(name) for name in names)


def _split_name(name: str) -> tuple[str, str] | None:
    """(the layer's name in the file, "down"/"up"/"alpha"), or None for other tensors."""
    for suffix, part in _PARTS.items():
        if name.endswith(suffix):
            return name[: -len(suffix)], part
    return None


def _transformer_targets(config: FluxTransformerConfig) -> dict[str, list[_Target]]:
    """BFL linear layer -> the diffusers layers it feeds, from the loader's key map."""
    targets: dict[str, list[_Target]] = {}
    for rule in bfl_key_rules(config):
        if rule.source.endswith(".weight") and rule.target.endswith(".weight"):
            module = rule.source.removesuffix(".weight")
            targets.setdefault(module, []).append(
                _Target(rule.target.removesuffix(".weight"), rule.rows, rule.swap_halves))
    return targets


def _layer_names(config: FluxTransformerConfig, clip_modules: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Every name a file may give a layer -> ("transformer"/"text_encoder", the layer's own name)."""
    names: dict[str, tuple[str, str]] = {}
    for module in _transformer_targets(config):
        names[_KOHYA_TRANSFORMER + module.replace(".", "_")] = ("transformer", module)
        names.update({prefix + module: ("transformer", module) for prefix in _BFL_PREFIXES})
    for module in clip_modules:
        # kohya and ComfyUI name CLIP layers from "text_model" (transformers 5 drops it on CLIPTextModel).
        full = "text_model." + module.removeprefix("text_model.")
        names.update({prefix + full.replace(".", "_"): ("text_encoder", module) for prefix in _KOHYA_CLIP})
        names[_COMFY_CLIP + full] = ("text_encoder", module)
    return names


def _scaled_down(pair: _Pair) -> torch.Tensor:
    """``down * alpha / rank`` (no alpha: scale 1, as kohya and peft both read it)."""
    assert pair.down is not None
    if pair.alpha is None:
        return pair.down
    scale = float(pair.alpha) / pair.down.shape[0]
    return (pair.down.float() * scale).to(pair.down.dtype)


def _transformer_pairs(layer: str, pair: _Pair, targets: list[_Target]) -> dict[str, torch.Tensor]:
    """peft tensors of one BFL layer's LoRA, split over the diffusers layers it feeds.

    Raises:
        ValueError: ``up`` has not the fused layer's output width (a LoRA for another FLUX size).
    """
    assert pair.up is not None
    down, up = _scaled_down(pair), pair.up
    width = max((t.rows[1] for t in targets if t.rows), default=up.shape[0])
    if up.shape[0] != width:
        raise ValueError(f"{layer} has {up.shape[0]} outputs in the LoRA and {width} in this FLUX model")
    out = {}
    for target in targets:
        part = up[target.rows[0]:target.rows[1]] if target.rows else up
        if target.swap_halves:  # BFL's final modulation is (shift, scale), diffusers' (scale, shift)
            part = torch.cat(part.chunk(2, dim=0)[::-1])
        out[f"transformer.{target.module}.lora_A.weight"] = down
        out[f"transformer.{target.module}.lora_B.weight"] = part.contiguous()
    return out


def _pairs(state: Mapping[str, torch.Tensor], names: Mapping[str, tuple[str, str]],
           conversion: FluxLoraConversion) -> dict[str, _Pair]:
    """The file's pairs by layer name; other tensors pass through or are noted unused."""
    pairs: dict[str, _Pair] = {}
    for name, tensor in state.items():
        split = _split_name(name)
        if split is not None and split[0] in names:
            setattr(pairs.setdefault(split[0], _Pair()), split[1], tensor)
        elif name.startswith(_PEFT_PREFIXES) and not name.startswith(_T5):
            conversion.state[name] = tensor
        else:
            conversion.unused.append(name)
    return pairs


def flux_lora_to_peft(state: Mapping[str, torch.Tensor], config: FluxTransformerConfig,
                      clip_modules: Iterable[str] = ()) -> FluxLoraConversion:
    """A FLUX.1 LoRA in kohya, BFL/ComfyUI or diffusers names, in diffusers' peft names.

    Args:
        state: the file's tensors.
        config: the loaded transformer's shape (``transformer_config_of``): which blocks exist and
            the row ranges of the fused layers.
        clip_modules: the names of CLIP-L's linear layers as the loaded model has them
            (``encoder.layers.0.self_attn.q_proj``), to place ``lora_te1_…`` names.

    Raises:
        ValueError: a layer's pair lacks ``down`` or ``up``, or has another width than the model.
    """
    names = _layer_names(config, clip_modules)
    targets = _transformer_targets(config)
    conversion = FluxLoraConversion()
    for layer, pair in _pairs(state, names, conversion).items():
        if pair.down is None or pair.up is None:
            raise ValueError(f"{layer} has only part of a LoRA pair (lora_down/lora_A and lora_up/lora_B)")
        component, module = names[layer]
        if component == "transformer":
            conversion.state.update(_transformer_pairs(layer, pair, targets[module]))
        else:
            conversion.state[f"text_encoder.{module}.lora_A.weight"] = _scaled_down(pair)
            conversion.state[f"text_encoder.{module}.lora_B.weight"] = pair.up
        conversion.converted += 1
    return conversion
