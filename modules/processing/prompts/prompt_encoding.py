"""Weighted prompts to embeddings, with A1111's arithmetic: 75-token chunks, BREAK, comma
backtracking, per-token weights and the "Original" emphasis normalisation.

Why not compel, which the product card names: compel 2.5.1 weights by lerping from the empty
prompt's embedding (and blends in the prompt without a fragment for weights below 1), splits
long prompts at sentences, and its clip-skip-2 path reads ``text_encoder.text_model``, which
transformers 5 removed (it raises AttributeError). A1111 users expect A1111's numbers, so
the few lines of A1111's rules live here, on the same CLIP encoding ``conditioning`` does.

A1111's rules (``sd_hijack_clip``, ``sd_emphasis``):

* Tokens fill chunks of 75; each chunk gets BOS and EOS and is padded to 77. BREAK ends the
  current chunk. When a chunk fills up and its last comma is at most 20 tokens back, the
  tokens after that comma move to the next chunk, so phrases are not cut in half.
* Each chunk is encoded separately; the chunks are concatenated along the sequence.
* Emphasis "Original": hidden states times per-token weights, then rescaled so their mean
  equals the unweighted mean. "No norm": the product alone.
* A textual-inversion embedding's name takes as many tokens as it has vectors; it is never
  split between chunks (a chunk it does not fit in is closed first). Its tokens are
  placeholders whose input vectors the encoder replaces (``TokenChunks.vectors``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from modules.processing.prompts.network_tags import embedding_pattern
from modules.processing.prompts.prompt_syntax import Fragment

__all__ = ["CHUNK_TOKENS", "COMMA_BACKTRACK", "EMBEDDING_PLACEHOLDER", "EMPHASIS_MODES", "TokenChunks",
           "apply_emphasis", "chunk_tokens"]

CHUNK_TOKENS = 75
COMMA_BACKTRACK = 20
EMPHASIS_MODES = ("Original", "No norm")


#: The token id under an embedding's vectors (CLIP's "!"): any id but EOS would do, since
#: the input vectors of those positions are replaced; EOS would move SDXL's pooled output.
EMBEDDING_PLACEHOLDER = 0


@dataclass
class TokenChunks:
    """Token ids and weights of a prompt: ``ids[k]`` and ``weights[k]`` have 77 entries each.

    ``vectors[k]`` lists the embeddings in chunk k as (position in the chunk, (n, D) vectors):
    the encoder's input vectors at positions ``position … position+n-1`` are these.
    """

    ids: list[list[int]] = field(default_factory=list)
    weights: list[list[float]] = field(default_factory=list)
    vectors: list[list[tuple[int, torch.Tensor]]] = field(default_factory=list)


class _ChunkBuilder:
    """Fills 75-token chunks the way A1111's ``tokenize_line`` does."""

    def __init__(self, bos: int, eos: int, pad: int, comma: int) -> None:
        self.bos, self.eos, self.pad, self.comma = bos, eos, pad, comma
        self.out = TokenChunks()
        self.tokens: list[int] = []
        self.weights: list[float] = []
        self.vectors: list[tuple[int, torch.Tensor]] = []  # (index in self.tokens, vectors)
        self.last_comma = -1

    def close_chunk(self) -> None:
        # BOS, tokens, EOS, then padding: what the tokenizer itself gives a short prompt, so an
        # unweighted prompt of up to 75 tokens encodes exactly as before.
        missing = CHUNK_TOKENS - len(self.tokens)
        self.out.ids.append([self.bos, *self.tokens, self.eos, *([self.pad] * missing)])
        self.out.weights.append([1.0, *self.weights, 1.0, *([1.0] * missing)])
        self.out.vectors.append([(index + 1, vectors) for index, vectors in self.vectors])  # + 1: BOS
        self.tokens, self.weights, self.vectors, self.last_comma = [], [], [], -1

    def _move_after_last_comma(self) -> None:
        """Close the chunk at its last comma; what follows it starts the next chunk."""
        cut = self.last_comma + 1
        moved, moved_weights = self.tokens[cut:], self.weights[cut:]
        moved_vectors = [(index - cut, vectors) for index, vectors in self.vectors if index >= cut]
        self.tokens, self.weights = self.tokens[:cut], self.weights[:cut]
        self.vectors = [(index, vectors) for index, vectors in self.vectors if index < cut]
        self.close_chunk()
        self.tokens, self.weights, self.vectors = moved, moved_weights, moved_vectors

    def add(self, token: int, weight: float) -> None:
        if token == self.comma:
            self.last_comma = len(self.tokens)
        elif (len(self.tokens) == CHUNK_TOKENS and self.last_comma != -1
              and len(self.tokens) - self.last_comma <= COMMA_BACKTRACK):
            self._move_after_last_comma()
        if len(self.tokens) == CHUNK_TOKENS:
            self.close_chunk()
        self.tokens.append(token)
        self.weights.append(weight)

    def add_embedding(self, vectors: torch.Tensor, weight: float) -> None:
        """An embedding's (n, D) vectors, kept whole in one chunk (A1111 does the same)."""
        vectors = vectors[:CHUNK_TOKENS]
        if len(self.tokens) + len(vectors) > CHUNK_TOKENS:
            self.close_chunk()
        self.vectors.append((len(self.tokens), vectors))
        self.tokens.extend([EMBEDDING_PLACEHOLDER] * len(vectors))
        self.weights.extend([weight] * len(vectors))


def _segments(fragments: Sequence[Fragment],
              embeddings: Mapping[str, torch.Tensor]) -> list[tuple[str, float | None]]:
    """Fragments split at embedding names: (text, weight) pairs; a name is its own segment
    and BREAK is ("", None)."""
    pattern = embedding_pattern(embeddings)
    segments: list[tuple[str, float | None]] = []
    for fragment in fragments:
        if fragment.is_break:
            segments.append(("", None))
        elif pattern is None:
            segments.append((fragment.text, fragment.weight))
        else:  # re.split keeps the names (the group) at the odd indices
            segments.extend((part, fragment.weight) for part in pattern.split(fragment.text) if part)
    return segments


def chunk_tokens(tokenizer: Any, fragments: Sequence[Fragment],
                 embeddings: Mapping[str, torch.Tensor] | None = None) -> TokenChunks:
    """Tokenize weighted fragments into A1111's 77-token chunks (at least one).

    The padding token is the tokenizer's own (EOS for SD1.x, "!" for SD2.x/SDXL's second).
    ``embeddings`` maps textual-inversion names to their (n, D) vectors for this tokenizer's
    encoder; a name written in the text becomes its vectors.
    """
    embeddings = embeddings or {}
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    builder = _ChunkBuilder(tokenizer.bos_token_id, tokenizer.eos_token_id, pad, comma)
    segments = _segments(fragments, embeddings)
    texts = [text for text, weight in segments if weight is not None and text not in embeddings]
    token_lists = iter(tokenizer(texts, add_special_tokens=False).input_ids if texts else [])
    for text, weight in segments:
        if weight is None:
            builder.close_chunk()
        elif text in embeddings:
            builder.add_embedding(embeddings[text], weight)
        else:
            for token in next(token_lists):
                builder.add(token, weight)
    if builder.tokens or not builder.out.ids:
        builder.close_chunk()
    return builder.out


def apply_emphasis(hidden: torch.Tensor, weights: torch.Tensor, mode: str) -> torch.Tensor:
    """Weight hidden states per token (A1111 ``sd_emphasis``).

    Args:
        hidden: (B, T, D) text-encoder states.
        weights: (B, T) per-token weights.
        mode: "Original" keeps the overall mean (A1111's default); "No norm" does not.
    """
    if mode not in EMPHASIS_MODES:
        raise ValueError(f"unknown emphasis mode {mode!r}; expected one of {', '.join(EMPHASIS_MODES)}")
    weighted = hidden * weights.to(hidden.dtype).unsqueeze(-1)
    if mode == "No norm":
        return weighted
    return weighted * (hidden.float().mean() / weighted.float().mean()).to(hidden.dtype)
