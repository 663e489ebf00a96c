"""Single-file ControlNets: one ``.safetensors`` with no ``config.json`` beside it.

Two layouts are in use: the original ControlNet repository's (``control_model.input_blocks...``,
``zero_convs``, ``input_hint_block``; e.g. ``control_v11p_sd15_canny``) and diffusers' own key
names saved as one file (most SDXL ControlNets). diffusers converts the first
(``convert_controlnet_checkpoint``) but would fetch a config from the hub for either; here
the config is read off the tensor shapes instead (a ControlNet is a copy of its UNet's
encoder, so widths, depths and block kinds are all in the weights). What shapes cannot tell,
the attention head count, follows the model family: 8 heads for SD1.x, 64-wide heads for
SD2.x and SDXL (as in their published configs).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from modules.models.files import ModelFileError, load_state_dict, read_safetensors_header

__all__ = ["context_width_of_file", "has_size_embedding", "infer_controlnet_config", "load_single_file_controlnet",
           "to_diffusers_keys"]

_LDM_PREFIX = "control_model."
#: Cross-attention widths of the families whose heads are 64 wide (SD2.x, SDXL).
_HEAD_64_WIDTHS = (1024, 2048)
#: SDXL's size/crop conditioning: 6 numbers, each embedded this wide (its published config).
_SDXL_TIME_EMBED = 256


def context_width_of_file(path: Path) -> int | None:
    """The cross-attention width of a single-file ControlNet, read from its header only (None if
    the file has no cross-attention key)."""
    header = read_safetensors_header(path)
    for key, entry in header.tensors.items():
        if key.endswith("attn2.to_k.weight") and len(entry.get("shape", ())) == 2:
            return int(entry["shape"][1])
    return None


def has_size_embedding(path: Path) -> bool:
    """Whether a single-file ControlNet has SDXL's size/crop embedding (diffusers' ``add_embedding``,
    the original layout's ``label_emb``), read from its header only: the mark of an SDXL ControlNet.

    Raises:
        ModelFileError: not a readable safetensors file.
    """
    keys = read_safetensors_header(path).tensors
    return any(key.startswith("add_embedding.") or key.removeprefix(_LDM_PREFIX).startswith("label_emb.")
               for key in keys)


def _ldm_layers_per_block(state: Mapping[str, torch.Tensor]) -> int:
    """ResNets per level in an LDM layout: the input blocks before the first downsampler."""
    downsamplers = sorted(int(key.split(".")[1]) for key in state
                          if key.startswith("input_blocks.") and key.endswith(".0.op.weight"))
    if downsamplers:
        return downsamplers[0] - 1
    return len({key.split(".")[1] for key in state if key.startswith("input_blocks.")}) - 1


def to_diffusers_keys(state: Mapping[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """The state dict in diffusers' key names, whichever of the two layouts it is in.

    Raises:
        ModelFileError: neither layout (a T2I-Adapter, a control LoRA, not a ControlNet at all).
    """
    if "controlnet_cond_embedding.conv_in.weight" in state:
        return dict(state)
    stripped = {key.removeprefix(_LDM_PREFIX): value for key, value in state.items()}
    if "input_hint_block.0.weight" not in stripped or "zero_convs.0.0.weight" not in stripped:
        raise ModelFileError(path, "unsupported", "is not a ControlNet (no input_hint_block / zero_convs "
                             "and no controlnet_cond_embedding weights)")
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    converted = convert_controlnet_checkpoint(stripped, {"layers_per_block": _ldm_layers_per_block(stripped)})
    # diffusers' converter leaves out SDXL's size/crop embedding (LDM's label_emb).
    for ldm, diffusers_name in (("label_emb.0.0.", "add_embedding.linear_1."), ("label_emb.0.2.",
                                                                                 "add_embedding.linear_2.")):
        for leaf in ("weight", "bias"):
            if ldm + leaf in stripped:
                converted[diffusers_name + leaf] = stripped[ldm + leaf]
    return converted


def _indices(state: Mapping[str, Any], prefix: str, position: int) -> list[int]:
    """The distinct integers at dotted ``position`` of the keys starting with ``prefix``."""
    return sorted({int(key.split(".")[position]) for key in state if key.startswith(prefix)})


def _down_blocks(state: Mapping[str, torch.Tensor]) -> tuple[list[str], list[int], list[int]]:
    """Per level: block kind, output width and transformer depth."""
    kinds, widths, depths = [], [], []
    for level in _indices(state, "down_blocks.", 1):
        widths.append(state[f"down_blocks.{level}.resnets.0.conv1.weight"].shape[0])
        blocks = _indices(state, f"down_blocks.{level}.attentions.0.transformer_blocks.", 5)
        kinds.append("CrossAttnDownBlock2D" if blocks else "DownBlock2D")
        depths.append(len(blocks) or 1)
    return kinds, widths, depths


def _hint_channels(state: Mapping[str, torch.Tensor]) -> list[int]:
    """The conditioning embedding's widths: ``conv_in``, then every second (strided) block."""
    blocks = _indices(state, "controlnet_cond_embedding.blocks.", 2)
    return [state["controlnet_cond_embedding.conv_in.weight"].shape[0],
            *(state[f"controlnet_cond_embedding.blocks.{i}.weight"].shape[0] for i in blocks[1::2])]


def infer_controlnet_config(state: Mapping[str, torch.Tensor], pooled_width: int | None = None) -> dict[str, Any]:
    """A ``ControlNetModel`` config that fits ``state`` (diffusers key names).

    Args:
        state: the ControlNet's weights.
        pooled_width: width of the pooled text embedding the UNet gets (SDXL: 1280), to split
            the size/crop embedding's input; None assumes SDXL's.
    """
    kinds, widths, depths = _down_blocks(state)
    context_key = next(key for key in state if key.endswith("attn2.to_k.weight"))
    context_width = state[context_key].shape[1]
    proj_in = next(key for key in state if key.endswith("proj_in.weight"))
    config: dict[str, Any] = {
        "in_channels": state["conv_in.weight"].shape[1],
        "conditioning_channels": state["controlnet_cond_embedding.conv_in.weight"].shape[1],
        "down_block_types": kinds, "block_out_channels": widths, "transformer_layers_per_block": depths,
        "layers_per_block": len(_indices(state, "down_blocks.0.resnets.", 3)),
        "mid_block_type": "UNetMidBlock2DCrossAttn" if any(k.startswith("mid_block.attentions.") for k in state)
        else "UNetMidBlock2D",
        "cross_attention_dim": context_width, "use_linear_projection": state[proj_in].ndim == 2,
        "attention_head_dim": [max(1, width // 64) for width in widths] if context_width in _HEAD_64_WIDTHS else 8,
        "conditioning_embedding_out_channels": _hint_channels(state),
    }
    if "add_embedding.linear_1.weight" in state:
        projection = state["add_embedding.linear_1.weight"].shape[1]
        time_embed = _SDXL_TIME_EMBED
        if pooled_width is not None and (projection - pooled_width) % 6 == 0 and projection > pooled_width:
            time_embed = (projection - pooled_width) // 6
        config.update(addition_embed_type="text_time", addition_time_embed_dim=time_embed,
                      projection_class_embeddings_input_dim=projection)
    return config


def load_single_file_controlnet(path: Path, dtype: torch.dtype, pooled_width: int | None = None) -> Any:
    """The ``diffusers.ControlNetModel`` in the single file ``path`` (on the CPU, in ``dtype``).

    Raises:
        ModelFileError: unreadable, not a ControlNet, or weights that do not fit the inferred model.
    """
    from diffusers import ControlNetModel

    state = to_diffusers_keys(load_state_dict(path), path)
    try:
        config = infer_controlnet_config(state, pooled_width)
        with torch.device("meta"):  # no throw-away random initialisation of a 1.4 GB model
            model = ControlNetModel.from_config(config)
        model.load_state_dict(state, strict=True, assign=True)
    except (KeyError, StopIteration, RuntimeError, ValueError) as error:
        raise ModelFileError(path, "unsupported", f"not a loadable ControlNet ({error})") from None
    return model.to(dtype).eval()
