"""FLUX.1 transformer tensor names: the config read from shapes, and BFL names -> diffusers names.

Two naming schemes exist for the same weights:

- BFL's own (github.com/black-forest-labs/flux, ``src/flux/model.py`` and ``modules/layers.py``),
  used by ``flux1-dev.safetensors`` / ``flux1-schnell.safetensors``, ComfyUI and Forge checkpoints
  (under ``model.diffusion_model.``) and city96's GGUF files: ``img_in``, ``txt_in``, ``time_in``,
  ``vector_in``, ``guidance_in``, ``double_blocks.N.*`` (fused ``img_attn.qkv``), ``single_blocks.N.*``
  (fused ``linear1`` = q, k, v and the MLP input), ``final_layer``.
- diffusers' ``FluxTransformer2DModel``: ``x_embedder``, ``context_embedder``, ``time_text_embed.*``,
  ``transformer_blocks.N.*`` (separate ``attn.to_q/k/v``), ``single_transformer_blocks.N.*``,
  ``norm_out``, ``proj_out``.

The map below is the one source of truth for both directions of use: loading a BFL file
(``KeyRule.source`` -> ``KeyRule.target``) and checking that a BFL file has every tensor.
Splits are row ranges of the fused tensor (dim 0 is the output features of a linear layer, also
in GGUF's byte layout), so they are views, never copies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass

__all__ = ["FluxTransformerConfig", "KeyRule", "axes_dims_for_head_dim", "bfl_key_rules", "block_indices"]

#: FLUX.1's MLP is 4x the hidden width in both block kinds; diffusers hard-codes the same ratio.
MLP_RATIO = 4
#: FLUX.1's rotary axes (time/index, height, width) for its 128-wide heads.
FLUX_AXES_DIMS_ROPE = (16, 56, 56)
FLUX_HEAD_DIM = 128


def axes_dims_for_head_dim(head_dim: int) -> tuple[int, int, int]:
    """The rotary embedding's per-axis widths for ``head_dim``: FLUX.1's (16, 56, 56) at 128.

    Rule for other widths (tiny test models): keep FLUX.1's proportions, 1/8 for the first axis
    and the rest split equally between height and width, each rounded down to an even number
    (rotary embeddings rotate pairs), the first axis taking what rounding leaves. The three always
    sum to ``head_dim``, as diffusers' ``FluxPosEmbed`` requires. 32 -> (4, 14, 14); 16 -> (4, 6, 6).

    Raises:
        ValueError: ``head_dim`` is odd or under 8 (no even split exists).
    """
    if head_dim < 8 or head_dim % 2:
        raise ValueError(f"attention head width {head_dim} cannot carry FLUX's 3-axis rotary embedding")
    side = (head_dim * (FLUX_AXES_DIMS_ROPE[1] / FLUX_HEAD_DIM)) // 2 * 2
    side = int(min(side, (head_dim - 2) // 4 * 2))
    return head_dim - 2 * side, side, side


@dataclass(frozen=True)
class FluxTransformerConfig:
    """The ``FluxTransformer2DModel`` arguments, all read from tensor shapes (no hub config).

    FLUX.1-dev: 19 double blocks, 38 single blocks, 24 heads x 128, 64 input channels (16 latent
    channels in 2x2 patches), T5 width 4096, CLIP pooled width 768, guidance_embeds True.
    """

    num_layers: int
    num_single_layers: int
    attention_head_dim: int
    num_attention_heads: int
    in_channels: int
    out_channels: int
    joint_attention_dim: int
    pooled_projection_dim: int
    guidance_embeds: bool
    axes_dims_rope: tuple[int, int, int]

    @property
    def inner_dim(self) -> int:
        return self.attention_head_dim * self.num_attention_heads

    def diffusers_kwargs(self) -> dict[str, object]:
        """Keyword arguments for ``FluxTransformer2DModel(**kwargs)`` (patch size is always 1)."""
        kwargs = asdict(self)
        kwargs["axes_dims_rope"] = tuple(self.axes_dims_rope)
        return {"patch_size": 1, **kwargs}


@dataclass(frozen=True)
class KeyRule:
    """One diffusers tensor and where it comes from in a BFL file.

    ``rows`` is ``(start, stop)`` along dim 0 of the source, for a fused source; ``swap_halves``
    swaps the two halves along dim 0 (BFL's final modulation is (shift, scale), diffusers'
    ``AdaLayerNormContinuous`` reads (scale, shift)).
    """

    target: str
    source: str
    rows: tuple[int, int] | None = None
    swap_halves: bool = False


_LINEAR = ("weight", "bias")
_TOP_LEVEL = {  # BFL module -> diffusers module, weight and bias each
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "txt_in": "context_embedder",
    "img_in": "x_embedder",
    "final_layer.linear": "proj_out",
}
_GUIDANCE = {
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
}
_DOUBLE_LINEARS = {
    "img_mod.lin": "norm1.linear", "txt_mod.lin": "norm1_context.linear",
    "img_attn.proj": "attn.to_out.0", "txt_attn.proj": "attn.to_add_out",
    "img_mlp.0": "ff.net.0.proj", "img_mlp.2": "ff.net.2",
    "txt_mlp.0": "ff_context.net.0.proj", "txt_mlp.2": "ff_context.net.2",
}
_DOUBLE_NORMS = {
    "img_attn.norm.query_norm.scale": "attn.norm_q.weight", "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
    "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
    "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight",
}
_SINGLE_LINEARS = {"modulation.lin": "norm.linear", "linear2": "proj_out"}
_SINGLE_NORMS = {"norm.query_norm.scale": "attn.norm_q.weight", "norm.key_norm.scale": "attn.norm_k.weight"}


def _split(target_modules: tuple[str, ...], source_module: str, widths: tuple[int, ...]) -> list[KeyRule]:
    rules, start = [], 0
    for module, width in zip(target_modules, widths, strict=True):
        rules += [KeyRule(f"{module}.{p}", f"{source_module}.{p}", (start, start + width)) for p in _LINEAR]
        start += width
    return rules


def _double_block_rules(i: int, inner: int) -> list[KeyRule]:
    src, dst = f"double_blocks.{i}.", f"transformer_blocks.{i}."
    rules = [KeyRule(f"{dst}{d}.{p}", f"{src}{s}.{p}") for s, d in _DOUBLE_LINEARS.items() for p in _LINEAR]
    rules += [KeyRule(dst + d, src + s) for s, d in _DOUBLE_NORMS.items()]
    thirds = (inner, inner, inner)
    rules += _split(tuple(dst + f"attn.to_{c}" for c in "qkv"), src + "img_attn.qkv", thirds)
    rules += _split(tuple(dst + f"attn.add_{c}_proj" for c in "qkv"), src + "txt_attn.qkv", thirds)
    return rules


def _single_block_rules(i: int, inner: int) -> list[KeyRule]:
    src, dst = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
    rules = [KeyRule(f"{dst}{d}.{p}", f"{src}{s}.{p}") for s, d in _SINGLE_LINEARS.items() for p in _LINEAR]
    rules += [KeyRule(dst + d, src + s) for s, d in _SINGLE_NORMS.items()]
    targets = (dst + "attn.to_q", dst + "attn.to_k", dst + "attn.to_v", dst + "proj_mlp")
    rules += _split(targets, src + "linear1", (inner, inner, inner, MLP_RATIO * inner))
    return rules


def bfl_key_rules(config: FluxTransformerConfig) -> list[KeyRule]:
    """Every diffusers tensor of a model with ``config`` and its BFL source (unprefixed names)."""
    top = dict(_TOP_LEVEL, **(_GUIDANCE if config.guidance_embeds else {}))
    rules = [KeyRule(f"{d}.{p}", f"{s}.{p}") for s, d in top.items() for p in _LINEAR]
    rules += [KeyRule(f"norm_out.linear.{p}", f"final_layer.adaLN_modulation.1.{p}", swap_halves=True)
              for p in _LINEAR]
    for i in range(config.num_layers):
        rules += _double_block_rules(i, config.inner_dim)
    for i in range(config.num_single_layers):
        rules += _single_block_rules(i, config.inner_dim)
    return rules


def block_indices(names: Mapping[str, object] | set[str], block: str) -> list[int]:
    """The sorted distinct N of every ``{block}.N.`` name (``block`` e.g. "double_blocks")."""
    pattern = re.compile(rf"^{re.escape(block)}\.(\d+)\.")
    return sorted({int(m.group(1)) for name in names if (m := pattern.match(name))})
