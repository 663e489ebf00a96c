"""T5-XXL, FLUX.1's second text encoder, from ``t5xxl_fp16.safetensors`` / ``t5xxl_fp8_e4m3fn.safetensors``.

Files as users have them hold ``shared.weight`` (some only ``encoder.embed_tokens.weight``),
``encoder.block.N.layer.M.*`` and ``encoder.final_layer_norm.weight``; some also carry the
unused ``decoder.*``. The config comes from the shapes: T5 v1.1 (Raffel et al. 2020; the v1.1
changes: gated-GELU feed-forward, no parameter sharing with the decoder) has ``d_model`` from the
embedding, ``num_heads`` from the relative attention bias table ``[buckets, heads]``, ``d_kv``
from the query projection ``[heads * d_kv, d_model]``, ``d_ff`` from ``wi_0``.

fp8 files keep their fp8 weights in memory: each attention projection and each feed-forward
block is cast to the compute dtype just for its own forward (diffusers' layerwise-casting hook,
attached to modules of the model we build), so the model never exists upcast as a whole.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from modules.families.flux.weights import FP8_DTYPES, PartTensors, open_part, resolve_prefix
from modules.models.files import ModelFileError

__all__ = ["T5_PROBE_KEY", "load_t5_encoder", "load_t5_encoder_folder", "t5_config_from_shapes"]

#: A key every T5 encoder file has (after its prefix); finds the prefix in all-in-one files.
T5_PROBE_KEY = "encoder.block.0.layer.0.SelfAttention.q.weight"
_BLOCK = re.compile(r"encoder\.block\.(\d+)\.")
_BIAS = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
# Weights that stay in fp8 storage: the four attention projections and the feed-forward matrices.
_STORED_LINEAR = re.compile(r"\.(SelfAttention\.[qkvo]|DenseReluDense\.(wi|wi_0|wi_1|wo))\.weight$")
_WHAT = "T5 encoder"


def _embedding_name(part: PartTensors) -> str:
    for name in ("shared.weight", "encoder.embed_tokens.weight"):
        if part.shape(name) is not None:
            return name
    raise ModelFileError(part.path, "incomplete", f"has no {part.prefix}shared.weight (nor encoder.embed_tokens."
                         f"weight), so it is not a complete {_WHAT}")


def t5_config_from_shapes(part: PartTensors) -> Any:
    """A ``transformers.T5Config`` for the encoder in ``part``, every size read from tensor shapes.

    Raises:
        ModelFileError: a tensor the config needs is missing.
    """
    from transformers import T5Config

    vocab_size, d_model = part.require(_embedding_name(part), _WHAT)
    buckets, num_heads = part.require(_BIAS, _WHAT)
    inner, _ = part.require(T5_PROBE_KEY, _WHAT)
    gated = part.shape("encoder.block.0.layer.1.DenseReluDense.wi_0.weight") is not None
    wi = "wi_0" if gated else "wi"
    d_ff, _ = part.require(f"encoder.block.0.layer.1.DenseReluDense.{wi}.weight", _WHAT)
    num_layers = 1 + max(int(m.group(1)) for m in map(_BLOCK.match, part.names) if m)
    return T5Config(
        vocab_size=vocab_size, d_model=d_model, d_kv=inner // num_heads, d_ff=d_ff, num_layers=num_layers,
        num_decoder_layers=0, num_heads=num_heads, relative_attention_num_buckets=buckets,
        relative_attention_max_distance=128, dropout_rate=0.0, layer_norm_epsilon=1e-6,
        feed_forward_proj="gated-gelu" if gated else "relu", tie_word_embeddings=False, is_encoder_decoder=False,
        use_cache=False,
    )


def _storage_dtype(part: PartTensors) -> torch.dtype | None:
    """The fp8 dtype the file's linear weights are stored in; None for fp16/bf16/fp32 files."""
    if any(name.endswith(("scale_weight", "scaled_fp8")) for name in part.names):
        raise ModelFileError(part.path, "unsupported", "is a scaled-fp8 T5 file (weights with scale_weight "
                             "tensors), which is not supported yet; use t5xxl_fp16.safetensors or "
                             "t5xxl_fp8_e4m3fn.safetensors")
    stored = part.dtype_name(T5_PROBE_KEY)
    return FP8_DTYPES.get(stored or "")


def _attach_casting(model: Any, storage: torch.dtype, compute: torch.dtype) -> None:
    """Cast each attention projection, and each feed-forward block as a whole, to ``compute`` for
    its own forward only. The feed-forward block is hooked as one because T5's ``wo`` casts its
    input to ``wo.weight.dtype``, which must already be the compute dtype when it looks."""
    from diffusers.hooks import apply_layerwise_casting_hook

    for block in model.encoder.block:
        attention = block.layer[0].SelfAttention
        for linear in (attention.q, attention.k, attention.v, attention.o):
            apply_layerwise_casting_hook(linear, storage, compute, non_blocking=False)
        apply_layerwise_casting_hook(block.layer[-1].DenseReluDense, storage, compute, non_blocking=False)


def load_t5_encoder(path: Path | str, prefix: str | None = None, dtype: torch.dtype = torch.bfloat16,
                    device: torch.device | str = "cpu") -> Any:
    """Load a T5 encoder (``transformers.T5EncoderModel``) from a safetensors file.

    Args:
        path: ``t5xxl_fp16.safetensors``, ``t5xxl_fp8_e4m3fn.safetensors`` or an all-in-one checkpoint.
        prefix: the part's key prefix (``"text_encoders.t5xxl.transformer."``); None finds it.
        dtype: the compute dtype (bf16/fp16 on a GPU, float32 on the CPU). fp8 files keep their
            attention and feed-forward weights in fp8 and compute in ``dtype``; every other tensor
            (and every tensor of other files) is stored in ``dtype``.
        device: where the tensors are read to, one at a time.

    Returns:
        The encoder in eval mode; ``model(input_ids).last_hidden_state`` is ``[batch, tokens, d_model]``.

    Raises:
        ModelFileError: the file is broken, not a T5 encoder, or a kind not supported.
    """
    from transformers import T5EncoderModel

    path = Path(path)
    with open_part(path, resolve_prefix(path, prefix, T5_PROBE_KEY, "a T5 encoder"), device) as part:
        config = t5_config_from_shapes(part)
        storage = _storage_dtype(part)
        with torch.device("meta"):
            model = T5EncoderModel(config)
        # One embedding serves as both ``shared`` and the encoder's input embedding.
        model.set_input_embeddings(model.shared)
        wanted = [name for name in model.state_dict() if name != "encoder.embed_tokens.weight"]
        names = {name: name for name in wanted}
        names["shared.weight"] = _embedding_name(part)
        missing = [source for source in names.values() if part.shape(source) is None]
        if missing:
            raise ModelFileError(path, "incomplete", f"lacks {len(missing)} {_WHAT} tensors "
                                 f"(first: {part.prefix}{missing[0]})")
        state = {name: part.read(source, None if storage and _STORED_LINEAR.search(name) else dtype)
                 for name, source in names.items()}
    state["encoder.embed_tokens.weight"] = state["shared.weight"]
    model.load_state_dict(state, strict=True, assign=True)
    if storage is not None:
        _attach_casting(model, storage, dtype)
    return model.eval().requires_grad_(False)


def load_t5_encoder_folder(folder: Path | str, dtype: torch.dtype = torch.bfloat16,
                           device: torch.device | str = "cpu") -> Any:
    """Load the T5 encoder of a diffusers FLUX folder (``text_encoder_2/``: config.json + weights)."""
    from transformers import T5EncoderModel

    model = T5EncoderModel.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
    return model.to(device).eval().requires_grad_(False)
