"""A job's text conditioning step by step: prompt editing and alternation switch the
conditioning at the steps the prompt names, and each distinct text is encoded once per job.

``[red:blue:0.5]`` over 20 steps conditions steps 1-10 on "red" and 11-20 on "blue" with two
encodings, however many images the job makes. Each text is encoded with its emphasis weights,
BREAKs and any length (``encode_weighted_prompt``); conditionings of different lengths are
padded with the empty prompt's chunk, as A1111 does, so one UNet batch can hold them all.
``a :1.2 AND b`` gives each sub-prompt its own schedule and encoding; the loop runs them in
one UNet batch and combines them with their weights (``Conditioning.weights``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch

from modules.models.embeddings import Embedding
from modules.processing.prompts.conditioning import Conditioning, encode_weighted_prompt
from modules.processing.prompts.network_tags import EXTRA_NETWORK
from modules.processing.prompts.prompt_syntax import prompt_schedule, split_and, strip_comments

__all__ = ["ScheduledConditioning", "texts_per_step"]


def texts_per_step(prompt: str, steps: int) -> list[str]:
    """The prompt text in force at each step (index 0 = step 1), comments removed."""
    texts: list[str] = []
    for last_step, text in prompt_schedule(strip_comments(prompt), steps):
        texts.extend([text] * (last_step - len(texts)))
    return texts


class ScheduledConditioning:
    """(cond, uncond) for every step of a pass, for a batch of ``batch_size`` images.

    Args:
        pipeline: the diffusers pipeline whose text encoder(s) encode.
        prompt / negative_prompt: the request's prompts (A1111 syntax).
        steps: sampling steps of the pass the schedule spans.
        batch_size: images per UNet batch.
        clip_skip: A1111 "Clip skip".
        use_cfg: False when CFG is off (guidance 1): no negative is encoded.
        emphasis: "Original" or "No norm" (``prompt_encoding.apply_emphasis``).
        embeddings: textual inversions the texts may name (``extra_networks``).
        encode: ``text -> Conditioning`` of a family with its own text encoders
            (``family_prompts.family_prompt_encoder``); None encodes with the pipeline's CLIP.
    """

    def __init__(self, pipeline: Any, prompt: str, negative_prompt: str, steps: int, batch_size: int,
                 clip_skip: int, use_cfg: bool, emphasis: str = "Original",
                 embeddings: Mapping[str, Embedding] | None = None,
                 encode: Callable[[str], Conditioning] | None = None) -> None:
        self._pipeline = pipeline
        self._family_encode = encode
        self._batch_size = batch_size
        self._clip_skip = clip_skip
        self._emphasis = emphasis
        self._embeddings = embeddings or {}
        self._cache: dict[str, Conditioning] = {}
        # <lora:...> tags are instructions, applied before encoding; not text (A1111 removes them too).
        prompt, negative_prompt = EXTRA_NETWORK.sub("", prompt), EXTRA_NETWORK.sub("", negative_prompt)
        sub_prompts = split_and(strip_comments(prompt))
        weights = tuple(weight for _, weight in sub_prompts)
        # Per step, the text of each sub-prompt in force then.
        positives = list(zip(*(texts_per_step(text, steps) for text, _ in sub_prompts), strict=True))
        negatives = texts_per_step(negative_prompt, steps) if use_cfg else [None] * steps
        for text in {*(t for texts in positives for t in texts), *(n for n in negatives if n is not None)}:
            self._encode(text)
        self._pad_to_longest()
        combined = {texts: self._combine(texts, weights) for texts in set(positives)}
        self._per_step = [(combined[p], None if n is None else self._cache[n])
                          for p, n in zip(positives, negatives, strict=True)]

    def _combine(self, texts: tuple[str, ...], weights: tuple[float, ...]) -> Conditioning:
        """One Conditioning for the sub-prompts' texts: their batches one after the other."""
        parts = [self._cache[text] for text in texts]
        if len(parts) == 1:  # no AND: the cached tensors themselves, not a copy
            return dataclasses.replace(parts[0], weights=weights)
        pooled = None if parts[0].pooled is None else torch.cat([c.pooled for c in parts])
        return Conditioning(torch.cat([c.embeds for c in parts]), pooled, weights)

    def _encode(self, text: str) -> Conditioning:
        if text in self._cache:
            return self._cache[text]
        if self._family_encode is not None:
            self._cache[text] = self._family_encode(text)
        else:
            self._cache[text] = encode_weighted_prompt(self._pipeline, text, self._batch_size, self._clip_skip,
                                                       self._emphasis, self._embeddings)
        return self._cache[text]

    def _pad_to_longest(self) -> None:
        """Append the empty prompt's chunk to shorter conditionings (A1111 ``pad_cond``)."""
        longest = max(c.embeds.shape[1] for c in self._cache.values())
        if all(c.embeds.shape[1] == longest for c in self._cache.values()):
            return  # always so for a family's own encoders: T5 has a fixed length
        empty = encode_weighted_prompt(self._pipeline, "", self._batch_size, self._clip_skip, self._emphasis).embeds
        for text, cond in self._cache.items():
            missing = (longest - cond.embeds.shape[1]) // empty.shape[1]
            if missing:
                embeds = torch.cat([cond.embeds, *([empty] * missing)], dim=1)
                self._cache[text] = dataclasses.replace(cond, embeds=embeds)

    @property
    def encodings(self) -> int:
        """How many texts were encoded (each distinct text once)."""
        return len(self._cache)

    def at(self, step: int) -> tuple[Conditioning, Conditioning | None]:
        """Conditioning of the 0-based sampling ``step`` (the last one past the end)."""
        return self._per_step[min(step, len(self._per_step) - 1)]
