"""Prompt encoding for families with text encoders of their own (FLUX.1's CLIP-L and T5-XXL).

The prompt language around the text is the same as for SD (comments, AND, prompt editing,
alternation, ``<lora:...>`` tags: ``ScheduledConditioning`` handles those); what reaches the
family's encoder is one step's plain text. A1111's emphasis weights are CLIP-specific
(``(word:1.2)`` scales CLIP's hidden states, Original mode renormalises them). A rule for T5 is
still to come, so for now the brackets and weights are removed and the words kept, and BREAK
becomes a space: the encoders see the words the user wrote, unweighted.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from modules.models.loader import LoadedModel
from modules.processing.prompts.conditioning import Conditioning
from modules.processing.prompts.prompt_syntax import parse_emphasis

__all__ = ["family_prompt_encoder", "unweighted_text"]


def unweighted_text(text: str) -> str:
    """One step's prompt text without A1111's emphasis syntax: ``"a (red:1.3) [fox] BREAK snow"``
    becomes ``"a red fox snow"`` (escaped brackets stay literal)."""
    words = [fragment.text for fragment in parse_emphasis(text) if not fragment.is_break]
    return " ".join(" ".join(words).split())


def family_prompt_encoder(model: LoadedModel, batch_size: int) -> Callable[[str], Conditioning] | None:
    """``text -> Conditioning`` for ``batch_size`` images through the family's own encoders
    (``FamilyCode.encode_prompt``), on the model's device and dtype; None for SD's families."""
    code = model.family.code
    if code is None:
        return None

    def encode(text: str) -> Conditioning:
        with torch.inference_mode():
            encoded = code.encode_prompt(model.pipeline, unweighted_text(text))
        embeds = encoded.embeds.to(model.device, model.dtype).repeat(batch_size, 1, 1)
        pooled = None if encoded.pooled is None else encoded.pooled.to(model.device, model.dtype).repeat(batch_size, 1)
        return Conditioning(embeds, pooled)

    return encode
