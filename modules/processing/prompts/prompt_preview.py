"""What a prompt will do, before generating: its schedule, sub-prompts, weights and chunks.

Shown under the prompt box on demand and served as an API endpoint, so a user can check
``[a:b:0.5]``, ``AND``, emphasis and 75-token chunking without spending a generation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from modules.models.embeddings import EmbeddingLibrary
from modules.models.files import ModelFileError
from modules.models.lora import LoraLibrary
from modules.processing.prompts.network_tags import EXTRA_NETWORK, embedding_names_in, read_tag
from modules.processing.prompts.prompt_encoding import CHUNK_TOKENS, chunk_tokens
from modules.processing.prompts.prompt_syntax import parse_emphasis, prompt_schedule, split_and, strip_comments

__all__ = ["preview_prompt", "token_counter"]



def _tokens_and_chunks(tokenizer: Any, text: str, embeddings: Mapping[str, torch.Tensor] | None = None,
                       ) -> tuple[int, int]:
    """Real tokens (no BOS/EOS/padding) and 75-token chunks of one step's text."""
    chunks = chunk_tokens(tokenizer, parse_emphasis(text), embeddings).ids
    # Each chunk is BOS, its tokens, EOS, padding: the first EOS after BOS ends its tokens.
    count = sum(ids.index(tokenizer.eos_token_id, 1) - 1 for ids in chunks)
    return count, len(chunks)


def token_counter(tokenizer: Any, prompt: str, steps: int = 20) -> str:
    """A1111's counter under the prompt box: tokens / capacity, for the longest step's text."""
    worst = (0, 1)
    for text, _ in split_and(strip_comments(prompt)):
        for _, step_text in prompt_schedule(text, steps):
            worst = max(worst, _tokens_and_chunks(tokenizer, step_text))
    return f"{worst[0]}/{worst[1] * CHUNK_TOKENS}"


def _networks(prompt: str, loras: LoraLibrary | None) -> tuple[list[dict[str, Any]], list[str]]:
    """The prompt's ``<…>`` tags, each with whether its LoRA exists, and notes on the others."""
    networks, notes = [], []
    for kind, arguments in EXTRA_NETWORK.findall(strip_comments(prompt)):
        entry: dict[str, Any] = {"kind": kind, "name": arguments.split(":")[0].strip()}
        networks.append(entry)
        tag, problem = read_tag(kind, arguments)
        if tag is None:
            notes.append(f"Not applied: {problem}")
            continue
        found = loras is not None and loras.find(tag.name) is not None
        entry.update(te=tag.te_weight, unet=tag.unet_weight, found=found)
        if not found:
            notes.append(f"LoRA not found: <lora:{tag.name}>")
    return networks, notes


def _embeddings(prompt: str, library: EmbeddingLibrary | None) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Vectors of the embeddings the prompt names (to count their tokens) and notes on broken ones."""
    if library is None:
        return {}, []
    vectors, notes = {}, []
    for name in embedding_names_in([prompt], [f.name for f in library.files]):
        try:
            vectors[name] = library.load(library.find(name)).vectors[0]
        except ModelFileError as error:
            notes.append(f"Embedding {name} cannot be used: {error.detail}")
    return vectors, notes


def preview_prompt(tokenizer: Any, prompt: str, steps: int, loras: LoraLibrary | None = None,
                   embeddings: EmbeddingLibrary | None = None) -> dict[str, Any]:
    """The prompt's plan over ``steps`` steps.

    Returns:
        ``{"sub_prompts": [{"weight", "schedule": [{"until_step", "text", "tokens", "chunks",
        "fragments": [[text, weight], ...]}]}], "extra_networks": [{"kind", "name", "found",
        "te", "unet"}], "embeddings": [{"name", "vectors"}], "notes": [...]}``; BREAK shows
        as a fragment ``["BREAK", -1]``; an embedding counts as many tokens as it has vectors.
    """
    networks, notes = _networks(prompt, loras)
    vectors, embedding_notes = _embeddings(prompt, embeddings)
    text_only = EXTRA_NETWORK.sub("", prompt)
    sub_prompts = []
    for text, weight in split_and(strip_comments(text_only)):
        schedule = []
        for until_step, step_text in prompt_schedule(text, steps):
            tokens, chunks = _tokens_and_chunks(tokenizer, step_text, vectors)
            fragments = [[f.text, f.weight] for f in parse_emphasis(step_text)]
            schedule.append({"until_step": until_step, "text": step_text, "tokens": tokens, "chunks": chunks,
                             "fragments": fragments})
        sub_prompts.append({"weight": weight, "schedule": schedule})
    used = [{"name": name, "vectors": int(v.shape[0])} for name, v in vectors.items()]
    return {"sub_prompts": sub_prompts, "extra_networks": networks, "embeddings": used,
            "notes": notes + embedding_notes}
