"""What a prompt will do, before generating: its schedule, sub-prompts, weights and chunks.

Shown under the prompt box on demand and served as an API endpoint, so a user can check
``[a:b:0.5]``, ``AND``, emphasis and 75-token chunking without spending a generation.
"""

from __future__ import annotations

import re
from typing import Any

from modules.processing.prompt_encoding import CHUNK_TOKENS, chunk_tokens
from modules.processing.prompt_syntax import parse_emphasis, prompt_schedule, split_and, strip_comments

__all__ = ["EXTRA_NETWORK", "preview_prompt", "token_counter"]

#: A1111's extra-network syntax, ``<kind:name:args>`` (LoRA, hypernetworks).
EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")


def _tokens_and_chunks(tokenizer: Any, text: str) -> tuple[int, int]:
    """Real tokens (no BOS/EOS/padding) and 75-token chunks of one step's text."""
    chunks = chunk_tokens(tokenizer, parse_emphasis(text)).ids
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


def preview_prompt(tokenizer: Any, prompt: str, steps: int) -> dict[str, Any]:
    """The prompt's plan over ``steps`` steps.

    Returns:
        ``{"sub_prompts": [{"weight", "schedule": [{"until_step", "text", "tokens", "chunks",
        "fragments": [[text, weight], ...]}]}], "extra_networks": [...], "notes": [...]}``;
        BREAK shows as a fragment ``["BREAK", -1]``.
    """
    sub_prompts = []
    for text, weight in split_and(strip_comments(prompt)):
        schedule = []
        for until_step, step_text in prompt_schedule(text, steps):
            tokens, chunks = _tokens_and_chunks(tokenizer, step_text)
            fragments = [[f.text, f.weight] for f in parse_emphasis(step_text)]
            schedule.append({"until_step": until_step, "text": step_text, "tokens": tokens, "chunks": chunks,
                             "fragments": fragments})
        sub_prompts.append({"weight": weight, "schedule": schedule})
    networks = [{"kind": kind, "name": args.split(":")[0]} for kind, args in EXTRA_NETWORK.findall(prompt)]
    notes = [f"<{n['kind']}:{n['name']}> is not applied: extra networks (LoRA) are not supported yet"
             for n in networks]
    return {"sub_prompts": sub_prompts, "extra_networks": networks, "notes": notes}
