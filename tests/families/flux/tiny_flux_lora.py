"""Tiny random FLUX.1 LoRAs, written in every key layout users have, and a tiny FluxPipeline.

Not a test module: ``from tests.families.flux.tiny_flux_lora import write_flux_lora``.

One LoRA (``TinyFluxLora``: a (down, up) pair per BFL linear layer of the tiny transformer and
per CLIP-L linear layer) is written as:

- "kohya": sd-scripts' ``lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight`` / ``lora_up`` /
  ``alpha`` and ``lora_te1_text_model_encoder_layers_0_self_attn_q_proj…``;
- "bfl": ``diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight`` / ``lora_B.weight`` and
  ``text_encoders.clip_l.transformer.text_model.…`` (alpha / rank folded into ``lora_A``);
- "comfy": the same names with ``lora_down`` / ``lora_up`` and ``.alpha``, as ComfyUI saves;
- "diffusers": peft names on diffusers' layers, ``transformer.transformer_blocks.0.attn.to_q.lora_A.weight``
  (the fused layers' ``up`` split by rows, by this package's own test-side map ``bfl_linear_targets``).

All four mean the same change of every weight: ``alpha / rank * up @ down``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
from safetensors.torch import save_file

from tests.families.flux.tiny_flux import DEV, TinyFlux, bfl_linear_targets, build_tiny_flux
from tests.families.flux.tiny_flux_parts import CLIP_WIDTH, T5_WIDTH, tiny_clip_l, tiny_flux_vae, tiny_t5

#: The tiny transformer of the pipeline: its text widths are the tiny CLIP's and T5's.
PIPELINE_SPEC = replace(DEV, joint_attention_dim=T5_WIDTH, pooled_projection_dim=CLIP_WIDTH)
FLUX_LORA_LAYOUTS = ("kohya", "bfl", "comfy", "diffusers")


def tiny_flux_pipeline(seed: int = 0) -> FluxPipeline:
    """diffusers' FluxPipeline on the tiny transformer, CLIP-L, T5 and autoencoder (no tokenizers:
    the LoRA tests call the models themselves)."""
    return FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=tiny_flux_vae(3),
                        text_encoder=tiny_clip_l(1), tokenizer=None, text_encoder_2=tiny_t5(2), tokenizer_2=None,
                        transformer=build_tiny_flux(PIPELINE_SPEC, seed))


@dataclass(frozen=True)
class TinyFluxLora:
    """``transformer``: BFL layer name -> (down (rank, in), up (out, rank)); ``clip``: CLIP-L layer
    name as the model has it (``encoder.layers.0.self_attn.q_proj``) -> (down, up)."""

    transformer: dict[str, tuple[torch.Tensor, torch.Tensor]]
    clip: dict[str, tuple[torch.Tensor, torch.Tensor]]
    rank: int
    alpha: float

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def _linears(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def random_flux_lora(pipeline: FluxPipeline, spec: TinyFlux = PIPELINE_SPEC, rank: int = 4, alpha: float = 2.0,
                     seed: int = 0, scale: float = 0.2) -> TinyFluxLora:
    """A LoRA on every linear layer of the transformer (in BFL's fused layers) and of CLIP-L."""
    generator = torch.Generator().manual_seed(seed)
    layers = _linears(pipeline.transformer)

    def pair(inputs: int, outputs: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.randn(rank, inputs, generator=generator) * scale,
                torch.randn(outputs, rank, generator=generator) * scale)

    transformer = {}
    for bfl, targets in bfl_linear_targets(spec).items():
        outputs = sum(layers[t].out_features for t in targets)
        transformer[bfl] = pair(layers[targets[0]].in_features, outputs)
    clip = {name: pair(m.in_features, m.out_features) for name, m in _linears(pipeline.text_encoder).items()}
    return TinyFluxLora(transformer, clip, rank, alpha)


def _diffusers_pairs(lora: TinyFluxLora, pipeline: FluxPipeline, spec: TinyFlux) -> dict[str, torch.Tensor]:
    layers, state = _linears(pipeline.transformer), {}
    for bfl, (down, up) in lora.transformer.items():
        targets = bfl_linear_targets(spec)[bfl]
        parts = up.split([layers[t].out_features for t in targets])
        if bfl == "final_layer.adaLN_modulation.1":  # BFL (shift, scale) -> diffusers (scale, shift)
            parts = (torch.cat(up.chunk(2)[::-1]),)
        for target, part in zip(targets, parts, strict=True):
            state[f"transformer.{target}.lora_A.weight"] = down * lora.scale
            state[f"transformer.{target}.lora_B.weight"] = part
    for name, (down, up) in lora.clip.items():
        state[f"text_encoder.{name}.lora_A.weight"] = down * lora.scale
        state[f"text_encoder.{name}.lora_B.weight"] = up
    return state


def flux_lora_state(lora: TinyFluxLora, layout: str, pipeline: FluxPipeline,
                    spec: TinyFlux = PIPELINE_SPEC) -> dict[str, torch.Tensor]:
    """``lora``'s tensors in one of ``FLUX_LORA_LAYOUTS``."""
    if layout == "diffusers":
        return _diffusers_pairs(lora, pipeline, spec)
    alpha = torch.tensor(lora.alpha)
    state: dict[str, torch.Tensor] = {}
    clip = {"text_model." + name: pair for name, pair in lora.clip.items()}
    if layout == "kohya":
        named = {"lora_unet_" + k.replace(".", "_"): v for k, v in lora.transformer.items()}
        named.update({"lora_te1_" + k.replace(".", "_"): v for k, v in clip.items()})
        for name, (down, up) in named.items():
            state.update({f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up, f"{name}.alpha": alpha})
        return state
    if layout not in ("bfl", "comfy"):
        raise ValueError(f"unknown layout {layout!r}; one of {FLUX_LORA_LAYOUTS}")
    named = {"diffusion_model." + k: v for k, v in lora.transformer.items()}
    named.update({"text_encoders.clip_l.transformer." + k: v for k, v in clip.items()})
    for name, (down, up) in named.items():
        if layout == "bfl":
            state.update({f"{name}.lora_A.weight": down * lora.scale, f"{name}.lora_B.weight": up})
        else:
            state.update({f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up, f"{name}.alpha": alpha})
    return state


def write_flux_lora(path: Path, lora: TinyFluxLora, layout: str, pipeline: FluxPipeline) -> Path:
    """``lora`` as a .safetensors file in ``layout``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.clone().contiguous() for k, v in flux_lora_state(lora, layout, pipeline).items()}, str(path))
    return path
