"""Text-encoder half of the diffusers -> LDM single-file export.

Two layouts exist in original Stable Diffusion checkpoints:

* **HF CLIP layout** (SD1.x ``cond_stage_model.transformer.``, SDXL first encoder
  ``conditioner.embedders.0.transformer.``): the transformers ``CLIPTextModel`` state
  dict, every key under ``text_model.``.
* **OpenCLIP layout** (SD2.x ``cond_stage_model.model.``, SDXL second encoder
  ``conditioner.embedders.1.model.``, SDXL refiner ``conditioner.embedders.0.model.``):
  ``token_embedding``, ``positional_embedding``, ``transformer.resblocks.N.*`` with q, k
  and v fused into ``attn.in_proj_weight`` / ``attn.in_proj_bias``, ``ln_final`` and
  ``text_projection`` stored as ``[hidden, projection]`` (the transpose of HF's
  ``text_projection.weight``).

What diffusers' loader (``convert_open_clip_checkpoint``) relies on when reading back:

* it splits ``in_proj_*`` into equal thirds of size ``text_projection.shape[0]`` when that
  key exists, else ``config.hidden_size``; our ``text_projection`` is ``[hidden, proj]`` so
  both agree.
* ``text_projection`` is required for ``CLIPTextModelWithProjection`` (SDXL encoder 2),
  otherwise its projection stays uninitialised. It is written only when the model has one;
  SD2's plain ``CLIPTextModel`` has none, and diffusers ignores
  ``cond_stage_model.model.text_projection`` anyway.
* ``logit_scale`` is never read, so it is not written.
* For SD2 (``cond_stage_model.model.``) diffusers drops ``transformer.resblocks.23.*``
  (the unused last layer of OpenCLIP ViT-H); a 24+ layer encoder would lose that layer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

SD1_TEXT_PREFIX = "cond_stage_model.transformer."
SD2_TEXT_PREFIX = "cond_stage_model.model."
SDXL_TEXT_PREFIX = "conditioner.embedders.0.transformer."
SDXL_TEXT2_PREFIX = "conditioner.embedders.1.model."
SDXL_REFINER_TEXT_PREFIX = "conditioner.embedders.0.model."

TextLayout = Literal["clip", "open_clip"]

# HF module path inside one encoder layer -> OpenCLIP module path inside one resblock.
_OPEN_CLIP_LAYER_MODULES = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}
# HF key (without ``text_model.``) -> OpenCLIP key, for the parts outside the layers.
_OPEN_CLIP_TOP_KEYS = {
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "final_layer_norm.weight": "ln_final.weight",
    "final_layer_norm.bias": "ln_final.bias",
}
_QKV_MODULES = {"self_attn.q_proj": "q", "self_attn.k_proj": "k", "self_attn.v_proj": "v"}
_LAYER_PREFIX = "encoder.layers."
_PROJECTION_KEY = "text_projection.weight"


def config_value(config: Any, name: str, default: Any = None) -> Any:
    """Reads a field from a config that is either a mapping or an attribute object.

    Args:
        config: A ``Mapping`` (diffusers ``FrozenDict``, plain dict) or an object with
            attributes (transformers ``PretrainedConfig``). ``None`` yields ``default``.
        name: Field name.
        default: Value returned when the field is absent.

    Returns:
        The field's value, or ``default``.
    """
    if config is None:
        return default
    if isinstance(config, Mapping):
        return config.get(name, default)
    return getattr(config, name, default)


def _hf_text_keys(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Normalises a CLIP text state dict to keys relative to ``text_model.``.

    transformers >= 5.6 flattened ``CLIPTextModel`` (keys ``embeddings.…``) while
    ``CLIPTextModelWithProjection`` keeps ``text_model.…``; both are accepted.
    ``text_projection.weight`` is kept as is and ``position_ids`` buffers are dropped.

    Args:
        state_dict: The encoder's state dict.

    Returns:
        A new dict with ``text_model.`` removed from every key.
    """
    out: dict[str, Tensor] = {}
    for key, tensor in state_dict.items():
        if key.endswith("position_ids"):
            continue
        out[key.removeprefix("text_model.")] = tensor
    return out


def clip_to_ldm(state_dict: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Converts a transformers CLIP text encoder to the HF-CLIP LDM layout.

    Args:
        state_dict: ``CLIPTextModel`` / ``CLIPTextModelWithProjection`` state dict, with
            or without the ``text_model.`` level.
        prefix: Key prefix of the encoder in the checkpoint, e.g.
            ``"cond_stage_model.transformer."`` (SD1.x) or
            ``"conditioner.embedders.0.transformer."`` (SDXL).

    Returns:
        ``{prefix + "text_model.<key>": tensor}`` (``text_projection.weight`` kept beside
        ``text_model.``); ``position_ids`` buffers are left out.
    """
    out: dict[str, Tensor] = {}
    for key, tensor in _hf_text_keys(state_dict).items():
        name = key if key == _PROJECTION_KEY else f"text_model.{key}"
        out[prefix + name] = tensor
    return out


def _split_layer_key(key: str) -> tuple[str, str, str]:
    """Splits ``encoder.layers.N.<module>.<leaf>`` into its parts.

    Args:
        key: HF key relative to ``text_model.``, starting with ``encoder.layers.``.

    Returns:
        ``(N, module, leaf)``, e.g. ``("0", "self_attn.q_proj", "weight")``.
    """
    layer, _, rest = key[len(_LAYER_PREFIX):].partition(".")
    module, _, leaf = rest.rpartition(".")
    return layer, module, leaf


def _fuse_qkv(qkv: Mapping[tuple[str, str], Mapping[str, Tensor]], prefix: str, hidden: int) -> dict[str, Tensor]:
    """Concatenates q, k, v projections into OpenCLIP's ``in_proj_weight``/``in_proj_bias``.

    Args:
        qkv: ``{(layer, "weight"|"bias"): {"q": t, "k": t, "v": t}}``.
        prefix: Checkpoint prefix of the encoder.
        hidden: Expected hidden size (rows of each part).

    Returns:
        The fused tensors under their OpenCLIP keys.

    Raises:
        ValueError: A part is missing or its size differs from ``hidden``.
    """
    out: dict[str, Tensor] = {}
    for (layer, leaf), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise ValueError(f"layer {layer}: incomplete q/k/v {leaf} ({sorted(parts)})")
        if any(parts[p].shape[0] != hidden for p in "qkv"):
            raise ValueError(f"layer {layer}: q/k/v {leaf} rows differ from hidden_size {hidden}")
        fused = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
        out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{leaf}"] = fused
    return out


def open_clip_to_ldm(state_dict: Mapping[str, Tensor], prefix: str, config: Any) -> dict[str, Tensor]:
    """Converts a transformers CLIP text encoder to the OpenCLIP LDM layout.

    Args:
        state_dict: ``CLIPTextModel`` (SD2.x) or ``CLIPTextModelWithProjection`` (SDXL
            encoder 2) state dict.
        prefix: Key prefix, e.g. ``"cond_stage_model.model."`` (SD2.x) or
            ``"conditioner.embedders.1.model."`` (SDXL).
        config: The encoder's config (``CLIPTextConfig``, a mapping or ``None``);
            ``hidden_size`` (else the token embedding width) checks the q/k/v shapes and
            ``num_hidden_layers`` warns about the SD2 layer that diffusers ignores on load.

    Returns:
        The OpenCLIP-layout tensors; ``text_projection`` is ``[hidden, projection]``.

    Raises:
        KeyError: A key has no OpenCLIP equivalent.
        ValueError: The q/k/v projections are incomplete or inconsistent.
    """
    text = _hf_text_keys(state_dict)
    hidden = int(config_value(config, "hidden_size") or text["embeddings.token_embedding.weight"].shape[1])
    layers = int(config_value(config, "num_hidden_layers", 0))
    if prefix == SD2_TEXT_PREFIX and layers > 23:
        logger.warning("diffusers ignores %stransformer.resblocks.23 when loading SD2 checkpoints", prefix)
    out: dict[str, Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, Tensor]] = {}
    for key, tensor in text.items():
        if key in _OPEN_CLIP_TOP_KEYS:
            out[prefix + _OPEN_CLIP_TOP_KEYS[key]] = tensor
        elif key == _PROJECTION_KEY:
            out[prefix + "text_projection"] = tensor.t().contiguous()
        elif key.startswith(_LAYER_PREFIX):
            layer, module, leaf = _split_layer_key(key)
            if module in _QKV_MODULES:
                qkv.setdefault((layer, leaf), {})[_QKV_MODULES[module]] = tensor
            elif module in _OPEN_CLIP_LAYER_MODULES:
                out[f"{prefix}transformer.resblocks.{layer}.{_OPEN_CLIP_LAYER_MODULES[module]}.{leaf}"] = tensor
            else:
                raise KeyError(f"no OpenCLIP mapping for text encoder key {key!r}")
        else:
            raise KeyError(f"no OpenCLIP mapping for text encoder key {key!r}")
    out.update(_fuse_qkv(qkv, prefix, hidden))
    return out


def text_encoder_plan(pipeline: Any, text_layout: TextLayout | None) -> list[tuple[str, Any, TextLayout]]:
    """Decides where each text encoder of ``pipeline`` goes and in which layout.

    Rule: a pipeline with ``text_encoder_2`` is SDXL (encoder 1 HF-CLIP at
    ``conditioner.embedders.0.transformer.``, encoder 2 OpenCLIP at
    ``conditioner.embedders.1.model.``; without encoder 1 it is the refiner, encoder 2 at
    ``conditioner.embedders.0.model.``). A single encoder is OpenCLIP (SD2.x) when its
    ``hidden_act`` is ``"gelu"`` (OpenCLIP ViT-H) and HF-CLIP (SD1.x) otherwise
    (OpenAI CLIP uses ``"quick_gelu"``); ``text_layout`` overrides that guess.

    Args:
        pipeline: A diffusers pipeline.
        text_layout: Layout override for single-encoder pipelines; must be ``None`` for SDXL.

    Returns:
        ``[(prefix, encoder, layout), ...]``.
    """
    encoder = getattr(pipeline, "text_encoder", None)
    encoder_2 = getattr(pipeline, "text_encoder_2", None)
    if encoder_2 is not None:
        if text_layout is not None:
            raise ValueError("text_layout cannot be overridden for SDXL pipelines")
        if encoder is None:
            return [(SDXL_REFINER_TEXT_PREFIX, encoder_2, "open_clip")]
        return [(SDXL_TEXT_PREFIX, encoder, "clip"), (SDXL_TEXT2_PREFIX, encoder_2, "open_clip")]
    if encoder is None:
        return []
    layout = text_layout or ("open_clip" if config_value(encoder.config, "hidden_act") == "gelu" else "clip")
    if layout not in ("clip", "open_clip"):
        raise ValueError(f"unknown text_layout {layout!r}")
    return [(SD2_TEXT_PREFIX if layout == "open_clip" else SD1_TEXT_PREFIX, encoder, layout)]
