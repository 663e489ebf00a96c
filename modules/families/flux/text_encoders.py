"""CLIP-L, FLUX.1's first text encoder, and the prompt encoding of both encoders.

``clip_l.safetensors`` (as ComfyUI and Forge users have it) holds the transformers
``CLIPTextModel`` keys ``text_model.*`` (some files add ``text_projection.weight`` or
``logit_scale``, unused here); all-in-one checkpoints put the same keys under
``text_encoders.clip_l.transformer.``. The config is SD1.x's shipped CLIP-L text config with
every size read from the shapes (heads: 64 channels each, as in CLIP ViT-L/14).

FLUX.1 conditions on CLIP-L's pooled output (the final-norm hidden state at ``<|endoftext|>``,
``[batch, 768]``) and on T5-XXL's last hidden states (``[batch, 512 or 256, 4096]``), the T5
input padded to its fixed length and run without an attention mask, as in BFL's reference code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modules.families.flux.tokenizers import clip_token_ids, t5_token_ids
from modules.families.flux.weights import PartTensors, open_part, resolve_prefix
from modules.models.files import ModelFileError
from modules.models.memory import execution_device
from modules.paths import CONFIGS_DIR

__all__ = ["CLIP_PROBE_KEY", "FluxPromptEmbeds", "FluxTextEncoders", "clip_config_from_shapes", "load_clip_l",
           "load_clip_l_folder"]

#: A key every CLIP text encoder file has (after its prefix).
CLIP_PROBE_KEY = "text_model.embeddings.token_embedding.weight"
_FILE_ROOT = "text_model."
_CLIP_CONFIG = CONFIGS_DIR / "sd15" / "text_encoder" / "config.json"
_LAYER = re.compile(r"text_model\.encoder\.layers\.(\d+)\.")
_HEAD_WIDTH = 64
_CONFIG_FIELDS = ("attention_dropout", "bos_token_id", "dropout", "eos_token_id", "hidden_act", "initializer_factor",
                  "initializer_range", "layer_norm_eps", "pad_token_id", "projection_dim")
_WHAT = "CLIP text encoder"


def clip_config_from_shapes(part: PartTensors) -> Any:
    """A ``transformers.CLIPTextConfig`` for the encoder in ``part``: SD1.x's CLIP-L config with
    vocabulary, width, depth, MLP width, positions and heads taken from the tensor shapes."""
    from transformers import CLIPTextConfig

    base = json.loads(_CLIP_CONFIG.read_text(encoding="utf-8"))
    vocab_size, hidden = part.require(CLIP_PROBE_KEY, _WHAT)
    positions, _ = part.require("text_model.embeddings.position_embedding.weight", _WHAT)
    intermediate, _ = part.require("text_model.encoder.layers.0.mlp.fc1.weight", _WHAT)
    layers = 1 + max(int(m.group(1)) for m in map(_LAYER.match, part.names) if m)
    return CLIPTextConfig(
        **{field: base[field] for field in _CONFIG_FIELDS}, vocab_size=vocab_size, hidden_size=hidden,
        intermediate_size=intermediate, num_hidden_layers=layers, num_attention_heads=max(1, hidden // _HEAD_WIDTH),
        max_position_embeddings=positions,
    )


def load_clip_l(path: Path | str, prefix: str | None = None, dtype: torch.dtype = torch.float16,
                device: torch.device | str = "cpu") -> Any:
    """Load CLIP-L (``transformers.CLIPTextModel``) from a safetensors file, one tensor at a time.

    Args:
        path: ``clip_l.safetensors`` or an all-in-one checkpoint.
        prefix: the part's key prefix (``"text_encoders.clip_l.transformer."``); None finds it.
        dtype, device: where and how the weights are kept.

    Returns:
        The encoder in eval mode; ``model(input_ids).pooler_output`` is ``[batch, hidden]``.

    Raises:
        ModelFileError: the file is broken or is not a complete CLIP text encoder.
    """
    from transformers import CLIPTextModel

    path = Path(path)
    prefix = resolve_prefix(path, prefix, CLIP_PROBE_KEY, "a CLIP text encoder")
    with open_part(path, prefix, device) as part:
        config = clip_config_from_shapes(part)
        with torch.device("meta"):
            model = CLIPTextModel(config)
        # The files name the weights ``text_model.<name>``; transformers 5's CLIPTextModel ``<name>``.
        wanted = {name: _FILE_ROOT + name for name in model.state_dict()}
        missing = [source for source in wanted.values() if part.shape(source) is None]
        if missing:
            raise ModelFileError(path, "incomplete", f"lacks {len(missing)} {_WHAT} tensors "
                                 f"(first: {prefix}{missing[0]})")
        state = {name: part.read(source, dtype) for name, source in wanted.items()}
    model.load_state_dict(state, strict=True, assign=True)
    # The position ids are a non-persistent buffer (not in the file); the meta build left it empty.
    positions = torch.arange(config.max_position_embeddings, device=device).expand((1, -1))
    model.embeddings.register_buffer("position_ids", positions, persistent=False)
    return model.eval().requires_grad_(False)


def load_clip_l_folder(folder: Path | str, dtype: torch.dtype = torch.float16,
                       device: torch.device | str = "cpu") -> Any:
    """Load CLIP-L from a diffusers FLUX folder's ``text_encoder/`` (config.json + weights)."""
    from transformers import CLIPTextModel

    model = CLIPTextModel.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
    return model.to(device).eval().requires_grad_(False)


@dataclass(frozen=True)
class FluxPromptEmbeds:
    """FLUX.1's conditioning for a batch of prompts.

    Attributes:
        prompt_embeds: T5 last hidden states, ``[batch, max_length, d_model]`` (4096 for T5-XXL).
        pooled_prompt_embeds: CLIP-L pooled output, ``[batch, 768]``.
    """

    prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor


@dataclass(frozen=True)
class FluxTextEncoders:
    """The two encoders and their tokenizers, as one object that turns prompts into conditioning."""

    clip_l: Any
    clip_tokenizer: Any
    t5: Any
    t5_tokenizer: Any

    @torch.no_grad()
    def encode(self, prompts: Sequence[str], max_length: int) -> FluxPromptEmbeds:
        """Encode ``prompts``; ``max_length`` is the T5 length (``T5_MAX_LENGTH["dev"]`` is 512).

        Each encoder runs on its execution device (offloaded models included); the results stay there.
        """
        clip_device = execution_device(self.clip_l)
        clip_ids = clip_token_ids(self.clip_tokenizer, prompts).to(clip_device)
        pooled = self.clip_l(clip_ids, output_hidden_states=False).pooler_output
        t5_device = execution_device(self.t5)
        t5_ids = t5_token_ids(self.t5_tokenizer, prompts, max_length).to(t5_device)
        hidden = self.t5(t5_ids, output_hidden_states=False).last_hidden_state
        return FluxPromptEmbeds(prompt_embeds=hidden, pooled_prompt_embeds=pooled)
