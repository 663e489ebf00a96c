"""Text conditioning: prompts to the embeddings the UNet cross-attends to.

``encode_weighted_prompt`` encodes one step's A1111 text: emphasis weights, BREAK and prompts
of any length in 75-token chunks (``prompt_encoding``). A plain prompt of up to 75 tokens gives
exactly the tensors diffusers' own ``encode_prompt`` gives, as the models were trained.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from modules.models.embeddings import Embedding
from modules.models.memory import execution_device
from modules.processing.prompts.prompt_encoding import apply_emphasis, chunk_tokens
from modules.processing.prompts.prompt_syntax import Fragment, parse_emphasis

__all__ = ["Conditioning", "encode_weighted_prompt"]


@dataclass(frozen=True)
class Conditioning:
    """What the UNet is conditioned on for one batch.

    Attributes:
        embeds: (B, 77k, D) text-encoder hidden states (D = 768 SD1, 1024 SD2, 2048 SDXL;
            k chunks of 77 tokens for long prompts).
        pooled: (B, 1280) pooled, projected output of SDXL's second text encoder; None otherwise.
        weights: one weight per sub-prompt of an ``AND`` prompt (Composable Diffusion, Liu et
            al. 2022). With n sub-prompts, ``embeds``/``pooled`` hold n batches one after the
            other, (n*B, ...), and the loop combines their predictions with these weights.
    """

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None
    weights: tuple[float, ...] = (1.0,)


def _final_layer_norm(encoder: Any) -> Any:
    # transformers 5 keeps it on the model itself; older releases under ``text_model``.
    norm = getattr(encoder, "final_layer_norm", None)
    return norm if norm is not None else encoder.text_model.final_layer_norm


def _clip_hidden(encoder: Any, ids: torch.Tensor, layer_from_end: int, final_norm: bool) -> Any:
    """Hidden states ``layer_from_end`` layers from the top (1 = last) and the encoder output.

    With ``final_norm`` the encoder's final layer norm is applied, as the model was trained
    (for layer 1 this equals ``last_hidden_state``); A1111's clip skip applies it to the
    earlier layer too. SDXL's penultimate-layer conditioning is used without it.
    """
    output = encoder(ids, output_hidden_states=True)
    hidden = output.hidden_states[-layer_from_end]
    if final_norm:
        hidden = _final_layer_norm(encoder)(hidden)
    return hidden, output


@contextlib.contextmanager
def _input_vectors_replaced(encoder: Any, ids: torch.Tensor,
                            vectors: list[list[tuple[int, torch.Tensor]]]) -> Iterator[None]:
    """While encoding ``ids`` (k, 77), put textual-inversion vectors into the encoder's input.

    A forward hook on the token-embedding layer swaps the placeholder tokens' vectors for
    the embedding's; it is removed when the block ends, so the shared encoder is unchanged.
    It only touches the call whose ids are ``ids`` (another thread may encode meanwhile).
    """
    if not any(vectors):
        yield
        return

    def replace(_module: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
        if inputs[0].data_ptr() != ids.data_ptr():
            return None
        output = output.clone()
        for chunk, placed in enumerate(vectors):
            for position, chunk_vectors in placed:
                output[chunk, position:position + len(chunk_vectors)] = chunk_vectors.to(output.device, output.dtype)
        return output

    handle = encoder.get_input_embeddings().register_forward_hook(replace)
    try:
        yield
    finally:
        handle.remove()


def _weighted_hidden(tokenizer: Any, encoder: Any, fragments: list[Fragment], layer_from_end: int, final_norm: bool,
                     emphasis: str, embeddings: Mapping[str, Embedding]) -> tuple[torch.Tensor, Any]:
    """(1, 77k, D) weighted hidden states of the fragments' k chunks, and the encoder output."""
    width = encoder.config.hidden_size
    encoder_vectors = {name: e.for_width(width) for name, e in embeddings.items()}
    chunks = chunk_tokens(tokenizer, fragments, {n: v for n, v in encoder_vectors.items() if v is not None})
    ids = torch.tensor(chunks.ids, device=execution_device(encoder))
    with _input_vectors_replaced(encoder, ids, chunks.vectors):
        hidden, output = _clip_hidden(encoder, ids, layer_from_end, final_norm)
    hidden = hidden.reshape(1, -1, hidden.shape[-1])
    weights = torch.tensor(chunks.weights, device=hidden.device).reshape(1, -1)
    if bool((weights != 1.0).any()):
        hidden = apply_emphasis(hidden, weights, emphasis)
    return hidden, output


@torch.inference_mode()
def encode_weighted_prompt(pipeline: Any, text: str, batch_size: int = 1, clip_skip: int = 1,
                           emphasis: str = "Original", embeddings: Mapping[str, Embedding] | None = None,
                           ) -> Conditioning:
    """Encode one A1111 prompt text (emphasis, BREAK, any length; no scheduling or AND).

    ``embeddings``: textual inversions by name; where the text writes a name, its vectors
    stand in for tokens (each encoder takes the vectors of its own width).

    Returns:
        Conditioning with embeds (batch_size, 77 * chunks, D) and, for SDXL, the pooled output
        of the first chunk (batch_size, 1280), on the text encoder's execution device.
    """
    fragments = parse_emphasis(text)
    embeddings = embeddings or {}
    text_encoder_2 = getattr(pipeline, "text_encoder_2", None)
    if text_encoder_2 is None:
        hidden, _ = _weighted_hidden(pipeline.tokenizer, pipeline.text_encoder, fragments, clip_skip, True, emphasis,
                                     embeddings)
        return Conditioning(embeds=hidden.repeat(batch_size, 1, 1))
    parts = []
    if pipeline.text_encoder is not None:
        parts.append(_weighted_hidden(pipeline.tokenizer, pipeline.text_encoder, fragments, clip_skip + 1, False,
                                      emphasis, embeddings)[0])
    hidden_2, output_2 = _weighted_hidden(pipeline.tokenizer_2, text_encoder_2, fragments, clip_skip + 1, False,
                                          emphasis, embeddings)
    parts.append(hidden_2)
    pooled = output_2.text_embeds[:1]  # A1111 pools the first chunk
    return Conditioning(embeds=torch.cat(parts, dim=-1).repeat(batch_size, 1, 1), pooled=pooled.repeat(batch_size, 1))
