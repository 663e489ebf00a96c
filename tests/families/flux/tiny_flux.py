"""Tiny random-weight FLUX.1 transformers, written in every file layout users have.

Not a test module: ``from tests.families.flux.tiny_flux import write_flux_bfl_file``.

The reference is a diffusers ``FluxTransformer2DModel`` built by diffusers itself from a tiny
config and filled with random values everywhere (norm scales and biases too, so a swapped or
misplaced tensor always changes the output). Files in BFL's layout are made from it by this
module's own diffusers -> BFL map (``diffusers_to_bfl``, written from BFL's ``flux/model.py``
and ``modules/layers.py``), independent of the loader's map, so a test that loads such a file
and compares with the reference checks the loader's map against a second description.

Tiny shape (``TinyFlux``): hidden 64 = 2 heads x 32, rotary axes (4, 14, 14), 2 double and
2 single blocks, 64 input channels (16 latent channels in 2x2 patches, as FLUX.1), text width
32 (T5 stand-in) and pooled width 32 (CLIP stand-in). Everything deterministic from ``seed``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from diffusers import FluxTransformer2DModel
from safetensors.torch import save_file

#: Names that prefix a transformer inside ComfyUI/Forge all-in-one checkpoints.
COMFY_PREFIX = "model.diffusion_model."


@dataclass(frozen=True)
class TinyFlux:
    """A tiny FLUX.1 shape. ``guidance``: True is dev (distilled guidance), False schnell."""

    num_layers: int = 2
    num_single_layers: int = 2
    num_heads: int = 2
    head_dim: int = 32
    in_channels: int = 64
    joint_attention_dim: int = 32
    pooled_projection_dim: int = 32
    guidance: bool = True

    @property
    def hidden(self) -> int:
        return self.num_heads * self.head_dim

    def diffusers_kwargs(self) -> dict[str, object]:
        """``FluxTransformer2DModel`` arguments (rotary axes by the loader's documented rule)."""
        side = {32: 14, 16: 6, 64: 28, 128: 56}[self.head_dim]
        return dict(patch_size=1, in_channels=self.in_channels, num_layers=self.num_layers,
                    num_single_layers=self.num_single_layers, attention_head_dim=self.head_dim,
                    num_attention_heads=self.num_heads, joint_attention_dim=self.joint_attention_dim,
                    pooled_projection_dim=self.pooled_projection_dim, guidance_embeds=self.guidance,
                    axes_dims_rope=(self.head_dim - 2 * side, side, side))


DEV = TinyFlux()
SCHNELL = replace(DEV, guidance=False)


def build_tiny_flux(spec: TinyFlux = DEV, seed: int = 0) -> FluxTransformer2DModel:
    """The reference model: diffusers' own ``FluxTransformer2DModel``, float32, eval mode, every
    tensor random (weights ~ N(0, 1/fan_in), biases and norm offsets ~ N(0, 0.05^2))."""
    torch.manual_seed(seed)
    model = FluxTransformer2DModel(**spec.diffusers_kwargs())
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if param.ndim == 2:
                param.copy_(noise / param.shape[1] ** 0.5)
            elif "norm" in name and "linear" not in name:
                param.copy_(1.0 + 0.05 * noise)
            else:
                param.copy_(0.05 * noise)
    return model.requires_grad_(False).eval()


def _block_maps(i: int, single: bool) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(BFL name -> diffusers name, BFL fused name -> diffusers parts in row order) of block i."""
    if single:
        b, d = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        plain = {"modulation.lin": "norm.linear", "linear2": "proj_out"}
        fused = {"linear1": ["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"]}
        norms = {"norm.query_norm.scale": "attn.norm_q.weight", "norm.key_norm.scale": "attn.norm_k.weight"}
    else:
        b, d = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        plain = {"img_mod.lin": "norm1.linear", "txt_mod.lin": "norm1_context.linear",
                 "img_attn.proj": "attn.to_out.0", "txt_attn.proj": "attn.to_add_out",
                 "img_mlp.0": "ff.net.0.proj", "img_mlp.2": "ff.net.2",
                 "txt_mlp.0": "ff_context.net.0.proj", "txt_mlp.2": "ff_context.net.2"}
        fused = {"img_attn.qkv": ["attn.to_q", "attn.to_k", "attn.to_v"],
                 "txt_attn.qkv": ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"]}
        norms = {"img_attn.norm.query_norm.scale": "attn.norm_q.weight",
                 "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
                 "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
                 "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight"}
    names = {b + n: d + m for n, m in norms.items()}
    names.update({f"{b}{n}.{p}": f"{d}{m}.{p}" for n, m in plain.items() for p in ("weight", "bias")})
    parts = {f"{b}{n}.{p}": [f"{d}{m}.{p}" for m in ms] for n, ms in fused.items() for p in ("weight", "bias")}
    return names, parts


_TOP = {"img_in": "x_embedder", "txt_in": "context_embedder", "final_layer.linear": "proj_out",
        "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
        "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
        "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
        "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
        "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
        "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2"}


def diffusers_to_bfl(state: dict[str, torch.Tensor], spec: TinyFlux = DEV) -> dict[str, torch.Tensor]:
    """A diffusers-named FLUX state dict in BFL's names: fused q/k/v (+MLP in) concatenated, the
    final modulation back to BFL's (shift, scale) order. Every tensor is a new contiguous one."""
    out = {}
    for bfl, ours in _TOP.items():
        for p in ("weight", "bias"):
            if f"{ours}.{p}" in state:
                out[f"{bfl}.{p}"] = state[f"{ours}.{p}"].clone()
    for p in ("weight", "bias"):
        scale, shift = state[f"norm_out.linear.{p}"].chunk(2, dim=0)
        out[f"final_layer.adaLN_modulation.1.{p}"] = torch.cat([shift, scale])
    blocks = [(i, False) for i in range(spec.num_layers)] + [(i, True) for i in range(spec.num_single_layers)]
    for i, single in blocks:
        names, parts = _block_maps(i, single)
        out.update({n: state[m].clone() for n, m in names.items()})
        out.update({n: torch.cat([state[m] for m in ms]) for n, ms in parts.items()})
    return out


def bfl_linear_targets(spec: TinyFlux = DEV) -> dict[str, list[str]]:
    """Every BFL linear layer (``double_blocks.0.img_attn.qkv``) -> the diffusers layers its output
    rows feed, in row order: one for a plain layer, q, k, v (and the MLP input) for a fused one.
    ``final_layer.adaLN_modulation.1`` feeds ``norm_out.linear`` with its two halves swapped."""
    targets = {bfl: [ours] for bfl, ours in _TOP.items() if spec.guidance or not bfl.startswith("guidance")}
    targets["final_layer.adaLN_modulation.1"] = ["norm_out.linear"]
    blocks = [(i, False) for i in range(spec.num_layers)] + [(i, True) for i in range(spec.num_single_layers)]
    for i, single in blocks:
        names, parts = _block_maps(i, single)
        targets.update({n.removesuffix(".weight"): [m.removesuffix(".weight")] for n, m in names.items()
                        if n.endswith(".weight")})
        targets.update({n.removesuffix(".weight"): [m.removesuffix(".weight") for m in ms]
                        for n, ms in parts.items() if n.endswith(".weight")})
    return targets


def tiny_flux_bfl_state_dict(spec: TinyFlux = DEV, seed: int = 0) -> dict[str, torch.Tensor]:
    """The reference model's tensors in BFL names (float32), as in ``flux1-dev.safetensors``."""
    return diffusers_to_bfl(build_tiny_flux(spec, seed).state_dict(), spec)


def write_flux_bfl_file(path: Path, spec: TinyFlux = DEV, seed: int = 0, *, prefix: str = "",
                        dtype: torch.dtype = torch.float32, fp8: torch.dtype | None = None,
                        extra: dict[str, torch.Tensor] | None = None) -> Path:
    """A BFL-layout .safetensors file of the reference model.

    Args:
        prefix: put before every name ("model.diffusion_model." as ComfyUI, "diffusion_model.").
        dtype: storage dtype of every tensor.
        fp8: store the 2-d (linear) weights in this float8 dtype, biases and norm scales in
            ``dtype``, as fp8 FLUX files do.
        extra: more tensors written as they are (an all-in-one file's text encoders and VAE).
    """
    state = {}
    for name, tensor in tiny_flux_bfl_state_dict(spec, seed).items():
        target = fp8 if fp8 is not None and tensor.ndim == 2 else dtype
        state[prefix + name] = tensor.to(target).contiguous()
    state.update(extra or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


def write_flux_diffusers_file(path: Path, spec: TinyFlux = DEV, seed: int = 0,
                              dtype: torch.dtype = torch.float32) -> Path:
    """A single .safetensors file in diffusers' names (``transformer_blocks.N.attn.to_q`` ...)."""
    state = {k: v.to(dtype).contiguous() for k, v in build_tiny_flux(spec, seed).state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


def write_flux_diffusers_folder(folder: Path, spec: TinyFlux = DEV, seed: int = 0, *,
                                max_shard_size: str | None = None) -> Path:
    """A diffusers FLUX folder: ``model_index.json`` and ``transformer/`` saved by diffusers'
    ``save_pretrained`` (config.json + ``diffusion_pytorch_model*.safetensors``; several shards
    with an index when ``max_shard_size`` is small, e.g. "100KB"). Returns ``folder``."""
    model = build_tiny_flux(spec, seed)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(folder / "transformer", safe_serialization=True, **kwargs)
    index = {"_class_name": "FluxPipeline", "transformer": ["diffusers", "FluxTransformer2DModel"]}
    (folder / "model_index.json").write_text(json.dumps(index), encoding="utf-8")
    return folder


TINY_FLUX_LAYOUTS = ("bfl", "comfy", "diffusion_model", "diffusers_file", "diffusers_folder",
                     "transformer_subfolder", "gguf")


def write_tiny_flux(layout: str, folder: Path, spec: TinyFlux = DEV, seed: int = 0) -> Path:
    """The tiny model in one of ``TINY_FLUX_LAYOUTS``, in ``folder``; returns what a user would
    point the loader at (a file, a diffusers folder or its ``transformer/`` subfolder).

    "bfl": flux1-dev.safetensors; "comfy": an all-in-one file under ``model.diffusion_model.``
    with stand-in text encoder and VAE tensors beside it; "diffusion_model": under that prefix;
    "diffusers_file"; "diffusers_folder"; "transformer_subfolder": a sharded ``transformer/``;
    "gguf": Q8_0.
    """
    if layout == "bfl":
        return write_flux_bfl_file(folder / "flux1-dev.safetensors", spec, seed)
    if layout == "comfy":
        extra = {"text_encoders.clip_l.transformer.text_model.final_layer_norm.weight": torch.ones(4),
                 "vae.decoder.conv_in.weight": torch.ones(4, 4, 3, 3)}
        return write_flux_bfl_file(folder / "flux1-dev-aio.safetensors", spec, seed, prefix=COMFY_PREFIX,
                                   extra=extra)
    if layout == "diffusion_model":
        return write_flux_bfl_file(folder / "flux-dm.safetensors", spec, seed, prefix="diffusion_model.")
    if layout == "diffusers_file":
        return write_flux_diffusers_file(folder / "flux-diffusers.safetensors", spec, seed)
    if layout == "diffusers_folder":
        return write_flux_diffusers_folder(folder / "FLUX.1-dev", spec, seed)
    if layout == "transformer_subfolder":
        return write_flux_diffusers_folder(folder / "FLUX.1-dev", spec, seed, max_shard_size="100KB") / "transformer"
    if layout != "gguf":
        raise ValueError(f"unknown layout {layout!r}; one of {TINY_FLUX_LAYOUTS}")
    from gguf import GGMLQuantizationType

    from tests.families.flux.tiny_flux_gguf import write_flux_gguf_file

    return write_flux_gguf_file(folder / "flux1-dev-Q8_0.gguf", GGMLQuantizationType.Q8_0, spec, seed)


def tiny_flux_inputs(spec: TinyFlux = DEV, seed: int = 1, batch: int = 1, side: int = 4,
                     text_tokens: int = 5) -> dict[str, torch.Tensor]:
    """Forward arguments for a ``side`` x ``side`` grid of packed latents (float32):
    hidden_states (B, side², in_channels), encoder_hidden_states (B, text_tokens, joint width),
    pooled_projections (B, pooled width), timestep (B,) in [0, 1], img_ids (side², 3) with the
    row/column positions FLUX uses, txt_ids zeros, guidance (B,) = 3.5 for dev only."""
    g = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    img_ids = torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(-1, 3).float()
    inputs = {
        "hidden_states": torch.randn(batch, side * side, spec.in_channels, generator=g),
        "encoder_hidden_states": torch.randn(batch, text_tokens, spec.joint_attention_dim, generator=g),
        "pooled_projections": torch.randn(batch, spec.pooled_projection_dim, generator=g),
        "timestep": torch.full((batch,), 0.7), "img_ids": img_ids, "txt_ids": torch.zeros(text_tokens, 3),
    }
    if spec.guidance:
        inputs["guidance"] = torch.full((batch,), 3.5)
    return inputs


def run_tiny_flux(model: FluxTransformer2DModel, inputs: dict[str, torch.Tensor],
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The model's prediction (B, tokens, channels) as float32, inputs cast to ``dtype``."""
    cast = {k: (v.to(dtype) if k not in ("img_ids", "txt_ids") else v) for k, v in inputs.items()}
    with torch.no_grad():
        return model(**cast, return_dict=False)[0].float()


def fp8_rounded(state: dict[str, torch.Tensor], fp8: torch.dtype) -> dict[str, torch.Tensor]:
    """A BFL-named ``state`` with every linear layer's weight and bias rounded through ``fp8`` and
    back to float32, norm scales (``*.scale``) untouched: the values an fp8-loaded model computes
    with (diffusers' layerwise casting stores a layer's bias in fp8 along with its weight)."""
    return {k: (v if k.endswith(".scale") else v.to(fp8).float()) for k, v in state.items()}


def save_bfl_state(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """Write a BFL-named state dict as it is (the reference for GGUF and fp8 files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()


#: FLUX.1-dev's real shape (schnell: the same without guidance).
FLUX1_DEV_KWARGS = dict(patch_size=1, in_channels=64, out_channels=None, num_layers=19, num_single_layers=38,
                        attention_head_dim=128, num_attention_heads=24, joint_attention_dim=4096,
                        pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=(16, 56, 56))


def full_size_bfl_shapes(guidance: bool = True, num_layers: int = 19,
                         num_single_layers: int = 38) -> dict[str, torch.Tensor]:
    """FLUX.1's BFL-named tensors at full width as meta tensors (shapes only, no memory)."""
    kwargs = dict(FLUX1_DEV_KWARGS, guidance_embeds=guidance, num_layers=num_layers,
                  num_single_layers=num_single_layers)
    with torch.device("meta"):
        model = FluxTransformer2DModel(**kwargs)
    spec = TinyFlux(num_layers=num_layers, num_single_layers=num_single_layers, guidance=guidance)
    return diffusers_to_bfl(model.state_dict(), spec)


def write_header_only_safetensors(path: Path, shapes: dict[str, torch.Tensor], dtype: str = "BF16",
                                  prefix: str = "") -> Path:
    """A valid safetensors header for ``shapes`` with a sparse (unwritten) data section: the file
    reports its full size (24 GB for FLUX.1-dev) but uses no disk. For detection tests only."""
    width = {"BF16": 2, "F16": 2, "F32": 4, "F8_E4M3": 1}[dtype]
    header, offset = {}, 0
    for name, tensor in shapes.items():
        size = tensor.numel() * width
        header[prefix + name] = {"dtype": dtype, "shape": list(tensor.shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as handle:
        handle.write(len(raw).to_bytes(8, "little") + raw)
        handle.truncate(8 + len(raw) + offset)
    return path
