"""FLUX.1's two tokenizers, built from files shipped in the repository (nothing is fetched).

CLIP-L uses the CLIP BPE tokenizer of the SD families (77 tokens, padded with
``<|endoftext|>``). T5-XXL uses Google's T5 SentencePiece vocabulary
(``modules/models/configs/t5_tokenizer``), padded to a fixed length: BFL's reference code and
diffusers' ``FluxPipeline`` use 512 tokens for dev and 256 for schnell.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from modules.models.loader import build_clip_tokenizer
from modules.paths import CONFIGS_DIR

__all__ = ["CLIP_MAX_LENGTH", "T5_MAX_LENGTH", "T5_TOKENIZER_FILE", "T5_VOCAB_SIZE", "build_flux_clip_tokenizer",
           "build_t5_tokenizer", "clip_token_ids", "t5_token_ids"]

T5_TOKENIZER_FILE = CONFIGS_DIR / "t5_tokenizer" / "tokenizer.json"
#: 32,000 SentencePiece pieces + 100 ``<extra_id_N>`` sentinels.
T5_VOCAB_SIZE = 32100
#: T5 sequence length per FLUX.1 variant (BFL's ``max_length`` for dev / schnell).
T5_MAX_LENGTH = {"dev": 512, "schnell": 256}
CLIP_MAX_LENGTH = 77


def build_t5_tokenizer() -> Any:
    """The T5 v1.1 tokenizer (32,100 tokens; pad 0, eos 1, unk 2) from the shipped ``tokenizer.json``.

    Raises:
        RuntimeError: the shipped file is missing or damaged.
    """
    from transformers import T5TokenizerFast

    if not T5_TOKENIZER_FILE.is_file():
        raise RuntimeError(f"the T5 tokenizer file {T5_TOKENIZER_FILE} is missing; restore it from the repository")
    tokenizer = T5TokenizerFast(tokenizer_file=str(T5_TOKENIZER_FILE))
    if len(tokenizer) != T5_VOCAB_SIZE:
        raise RuntimeError(f"T5 tokenizer has {len(tokenizer)} tokens instead of {T5_VOCAB_SIZE}; "
                           f"{T5_TOKENIZER_FILE} is damaged")
    tokenizer.model_max_length = max(T5_MAX_LENGTH.values())
    return tokenizer


def build_flux_clip_tokenizer() -> Any:
    """The CLIP-L tokenizer as FLUX.1 uses it: 77 tokens, padded with ``<|endoftext|>``."""
    return build_clip_tokenizer()


def t5_token_ids(tokenizer: Any, prompts: Sequence[str], max_length: int) -> torch.Tensor:
    """Token ids for T5, padded with 0 and truncated to ``max_length`` (``</s>`` kept last).

    Returns:
        int64 tensor of shape ``[len(prompts), max_length]``.
    """
    encoded = tokenizer(list(prompts), padding="max_length", max_length=max_length, truncation=True,
                        return_tensors="pt")
    return encoded.input_ids


def clip_token_ids(tokenizer: Any, prompts: Sequence[str]) -> torch.Tensor:
    """Token ids for CLIP-L: ``<|startoftext|>`` … ``<|endoftext|>``, padded/truncated to 77.

    Returns:
        int64 tensor of shape ``[len(prompts), 77]``.
    """
    encoded = tokenizer(list(prompts), padding="max_length", max_length=CLIP_MAX_LENGTH, truncation=True,
                        return_tensors="pt")
    return encoded.input_ids
