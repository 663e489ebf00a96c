"""A job's text conditioning step by step: prompt editing and alternation switch the
conditioning at the steps the prompt names, and each distinct text is encoded once per job.

``[red:blue:0.5]`` over 20 steps conditions steps 1-10 on "red" and 11-20 on "blue" with two
encodings, however many images the job makes. Weights, AND and long prompts are encoded by
the prompt-language work that builds on this; here a step's text goes to the plain encoder.
"""

from __future__ import annotations

from typing import Any

from modules.processing.conditioning import Conditioning, encode_prompts
from modules.processing.prompt_syntax import prompt_schedule, strip_comments

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
    """

    def __init__(self, pipeline: Any, prompt: str, negative_prompt: str, steps: int, batch_size: int,
                 clip_skip: int, use_cfg: bool) -> None:
        self._pipeline = pipeline
        self._batch_size = batch_size
        self._clip_skip = clip_skip
        self._cache: dict[str, Conditioning] = {}
        positives = texts_per_step(prompt, steps)
        negatives = texts_per_step(negative_prompt, steps) if use_cfg else [None] * steps
        self._per_step = [(self._encode(p), None if n is None else self._encode(n))
                          for p, n in zip(positives, negatives, strict=True)]

    def _encode(self, text: str) -> Conditioning:
        if text not in self._cache:
            self._cache[text] = encode_prompts(self._pipeline, [text] * self._batch_size, self._clip_skip)
        return self._cache[text]

    @property
    def encodings(self) -> int:
        """How many texts were encoded (each distinct text once)."""
        return len(self._cache)

    def at(self, step: int) -> tuple[Conditioning, Conditioning | None]:
        """Conditioning of the 0-based sampling ``step`` (the last one past the end)."""
        return self._per_step[min(step, len(self._per_step) - 1)]
