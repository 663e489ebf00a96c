"""Perturbed-Attention Guidance (Ahn et al. 2024, "Self-Rectifying Diffusion Sampling with
Perturbed-Attention Guidance"): guide each step away from what the model predicts when its
self-attention is broken, which sharpens structure without a negative prompt.

Per UNet call the job runs the model once more, on the first positive prompt's rows only,
with the self-attention maps of the chosen layers replaced by the identity (each token
attends only to itself, so the attention output is its own value projection: the paper's
Sec. 4, Eq. 9-10). The guided prediction is (paper, Eq. 12, added to CFG as in its Sec. 5)

    out = cfg_out + scale * (cond - perturbed)

and also works with CFG off (``cfg_out`` is then ``cond``). Adding the same
``scale * (cond - perturbed)`` to every batch copy of the UNet output gives exactly that after
CFG, whatever the CFG scale and AND-prompt weights.

The layers default to the paper's choice for SD1.x and SDXL, the middle block's self-
attention (diffusers' PAG pipelines default to "mid" as well); "First up block" is the first
up block that has attention. The perturbation is an attention processor on the job's
weight-sharing clone of the UNet, switched on only for the extra call; the shared model
never changes. The infotext uses Forge's keys (``PerturbedAttentionGuidance_scale``);
pasting reads those and sd-webui-incantations' ("PAG Active", "PAG Scale").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import torch

from modules.extensions.api import (
    AlwaysVisible,
    Checkbox,
    Dropdown,
    JobModel,
    ModelCall,
    ModelFunction,
    ModelPatches,
    Script,
    ScriptCheckError,
    Slider,
    Txt2ImgRequest,
    attention_modules,
)

MIDDLE, FIRST_UP, BOTH = "Middle block", "First up block", "Middle and first up block"
LAYERS = (MIDDLE, FIRST_UP, BOTH)
DEFAULT_SCALE = 3.0  # the paper's and Forge's default
PASTE_FIELDS = MappingProxyType({
    "PerturbedAttentionGuidance_enabled": "enabled", "PerturbedAttentionGuidance_scale": "scale",
    "PerturbedAttentionGuidance_layers": "layers", "PAG Active": "enabled", "PAG Scale": "scale",
})


class PerturbSwitch:
    """Whether the job's UNet call is the perturbed one (state of one job's processors)."""

    def __init__(self) -> None:
        self.on = False


class IdentitySelfAttention:
    """An attention processor that, while ``switch.on``, uses the identity as attention map:
    softmax(QK^T) -> I, so the output is the value projection of each token itself (Ahn et al.
    2024, Sec. 4). Otherwise it defers to ``original``."""

    def __init__(self, original: Any, switch: PerturbSwitch) -> None:
        self.original = original
        self.switch = switch

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, *args: Any,
                 **kwargs: Any) -> torch.Tensor:
        if not self.switch.on:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        spatial = hidden_states.ndim == 4  # (B, C, H, W) inputs become (B, H*W, C) tokens
        if spatial:
            batch, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channels, height * width).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        out = attn.to_out[1](attn.to_out[0](attn.to_v(hidden_states)))  # linear projection, then dropout
        if spatial:
            out = out.transpose(-1, -2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def layer_filter(unet: Any, layers: str) -> Callable[[str, Any], bool]:
    """Selects the self-attention modules (``attn1``) of the chosen blocks of ``unet``."""
    names = [name for name, module in attention_modules(unet) if not module.is_cross_attention]
    first_up = next((name.split(".")[1] for name in names if name.startswith("up_blocks.")), None)
    prefixes = []
    if layers in (MIDDLE, BOTH):
        prefixes.append("mid_block.")
    if layers in (FIRST_UP, BOTH) and first_up is not None:
        prefixes.append(f"up_blocks.{first_up}.")
    return lambda name, module: not module.is_cross_attention and name.startswith(tuple(prefixes))


def pag_wrapper(switch: PerturbSwitch, scale: float) -> Callable[[ModelCall, ModelFunction], torch.Tensor]:
    """The model wrapper: the call as it is, plus one perturbed call on the first positive copy."""

    def wrapper(call: ModelCall, run: ModelFunction) -> torch.Tensor:
        out = run(call)
        first = 1 if call.uses_cfg else 0
        switch.on = True
        try:
            perturbed = run(call.copy_rows(first))
        finally:
            switch.on = False
        rows = call.batch_size
        delta = scale * (out[first * rows:(first + 1) * rows] - perturbed)
        return out + delta.repeat(call.copies, *([1] * (delta.ndim - 1)))

    return wrapper


class PerturbedAttentionGuidance(Script):
    def title(self) -> str:
        return "Perturbed-Attention Guidance"

    def show(self, is_img2img: bool) -> object:
        return AlwaysVisible

    def ui(self, is_img2img: bool) -> dict:
        return {
            "enabled": Checkbox("Enable PAG", False),
            "scale": Slider("PAG scale", 0.0, 30.0, DEFAULT_SCALE, step=0.1),
            "layers": Dropdown("Perturbed layers", LAYERS, MIDDLE),
        }

    def check(self, p: Txt2ImgRequest, model: JobModel | None, enabled: bool, scale: float, **args: Any) -> None:
        # The perturbed layers are UNet blocks; FLUX's joint attention would need its own rule.
        if enabled and scale != 0 and model is not None and not model.family.has_unet:
            raise ScriptCheckError(f"Perturbed-Attention Guidance perturbs a UNet's self-attention blocks; "
                                   f"{model.family.label} has no UNet (turn it off for it)", "enabled")

    def patch_model(self, p: Txt2ImgRequest, patches: ModelPatches, enabled: bool, scale: float,
                    layers: str) -> None:
        if not enabled or scale == 0:
            return
        switch = PerturbSwitch()
        patches.replace_attention(lambda name, module, original: IdentitySelfAttention(original, switch),
                                  layer_filter(patches.model, layers))
        patches.add_model_wrapper(pag_wrapper(switch, scale))
        patches.infotext.update(PerturbedAttentionGuidance_enabled=True, PerturbedAttentionGuidance_scale=scale)
        if layers != MIDDLE:
            patches.infotext["PerturbedAttentionGuidance_layers"] = layers

    def paste_fields(self) -> Mapping[str, str]:
        return PASTE_FIELDS
