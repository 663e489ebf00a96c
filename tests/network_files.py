"""LoRA and textual-inversion files with random weights, written the way kohya's sd-scripts
and A1111 write them, for the tiny test models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from modules.models.ldm_export import unet_to_ldm

# The layers kohya's LoRA trains: attention projections and feed-forward of the transformer
# blocks in the UNet, attention and MLP of the CLIP text encoders.
_UNET_TARGETS = ("attn1.to_", "attn2.to_", "ff.net", "proj_in", "proj_out")
_TEXT_TARGETS = ("self_attn.", "mlp.")


def _pair(module: torch.nn.Linear, rank: int, generator: torch.Generator, scale: float) -> list[torch.Tensor]:
    down = torch.randn(rank, module.in_features, generator=generator) * scale
    up = torch.randn(module.out_features, rank, generator=generator) * scale
    return [down, up]


def _linear_layers(model: torch.nn.Module, targets: tuple[str, ...]) -> dict[str, torch.nn.Linear]:
    return {name: module for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and any(t in name for t in targets)}


def _unet_names(pipeline: Any, sgm: bool) -> dict[str, torch.nn.Linear]:
    """kohya's UNet module names: diffusers' for SD1.x, LDM's (``input_blocks_4_1_…``) for SDXL."""
    layers = _linear_layers(pipeline.unet, _UNET_TARGETS)
    if not sgm:
        return {name.replace(".", "_"): module for name, module in layers.items()}
    ldm = unet_to_ldm({f"{name}.weight": module.weight for name, module in layers.items()}, pipeline.unet.config,
                      prefix="")
    by_tensor = {id(module.weight): module for module in layers.values()}
    return {key.removesuffix(".weight").replace(".", "_"): by_tensor[id(tensor)] for key, tensor in ldm.items()}


def kohya_lora(pipeline: Any, rank: int = 4, seed: int = 0, scale: float = 0.3, alpha: float = 2.0,
               text: bool = True, unet: bool = True) -> dict[str, torch.Tensor]:
    """A kohya-layout LoRA state dict for ``pipeline``: ``lora_unet_…``, ``lora_te_…`` (SDXL:
    ``lora_te1_``/``lora_te2_``) keys with ``lora_down``/``lora_up`` weights and ``alpha``."""
    generator = torch.Generator().manual_seed(seed)
    is_xl = getattr(pipeline, "text_encoder_2", None) is not None
    modules: dict[str, torch.nn.Linear] = {}
    if unet:
        modules.update({f"lora_unet_{name}": m for name, m in _unet_names(pipeline, sgm=is_xl).items()})
    if text:
        encoders = {"lora_te1_": pipeline.text_encoder, "lora_te2_": pipeline.text_encoder_2} if is_xl else {
            "lora_te_": pipeline.text_encoder}
        for prefix, encoder in encoders.items():
            for name, module in _linear_layers(encoder, _TEXT_TARGETS).items():
                # kohya names CLIP layers from "text_model" (transformers 5 drops it on CLIPTextModel).
                modules[prefix + "text_model_" + name.removeprefix("text_model.").replace(".", "_")] = module
    state = {}
    for key, module in sorted(modules.items()):
        down, up = _pair(module, rank, generator, scale)
        state.update({f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up,
                      f"{key}.alpha": torch.tensor(alpha)})
    return state


def write_lora(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=metadata)
    return path


def write_embedding(path: Path, widths: tuple[int, ...], vectors: int = 2, seed: int = 0, scale: float = 1.0) -> Path:
    """A textual-inversion file: A1111's ``emb_params`` for one width, SDXL's ``clip_l``/``clip_g``
    for two (as .safetensors), or A1111's pickled ``string_to_param`` for a ``.pt`` path."""
    generator = torch.Generator().manual_seed(seed)
    tensors = [torch.randn(vectors, width, generator=generator) * scale for width in widths]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".pt":
        torch.save({"string_to_param": {"*": tensors[0]}, "name": path.stem, "step": 100}, path)
    elif len(tensors) == 2:
        save_file({"clip_l": tensors[0], "clip_g": tensors[1]}, str(path))
    else:
        save_file({"emb_params": tensors[0]}, str(path))
    return path
