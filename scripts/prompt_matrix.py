"""Prompt matrix (A1111's built-in script): every combination of the prompt's optional parts.

``a castle|at night|in snow`` makes four images: "a castle", "a castle, at night",
"a castle, in snow" and "a castle, at night, in snow", and a grid whose columns switch the
first half of the optional parts and whose rows switch the rest.

A1111 clients send ``script_args: [put_at_start, different_seeds, prompt_type,
variations_delimiter, margin_size]`` (the names here are A1111's).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from modules.extensions.api import (
    Checkbox,
    Dropdown,
    Processed,
    Script,
    ScriptCheckError,
    Slider,
    Txt2ImgRequest,
    args_by_position,
    image_grid,
    merge_results,
    prepend_grid,
    with_fixed_seeds,
)

#: 2**8 images is already a long job (and within ``MAX_SCRIPT_IMAGES``); more is almost surely a mistake.
MAX_VARIABLE_PARTS = 8
#: A1111's ``run(p, *args)`` order, after ``p`` (its radio buttons send their text, not an index).
A1111_ARGS = ("put_at_start", "different_seeds", "prompt_type", "variations_delimiter", "margin_size")


def _labels(parts: list[str], bits: range) -> list[str]:
    """Legend of each combination of ``parts`` (bit k of the index = part k included)."""
    labels = []
    for combination in range(2 ** len(parts)):
        labels.append(", ".join(("+" if combination >> k & 1 else "-") + parts[k] for k in bits) or " ")
    return labels


class PromptMatrix(Script):
    def title(self) -> str:
        return "Prompt matrix"

    def ui(self, is_img2img: bool) -> dict:
        return {
            "put_at_start": Checkbox("Put variable parts at start of prompt"),
            "different_seeds": Checkbox("Use different seed for each picture"),
            "prompt_type": Dropdown("Select prompt", ["positive", "negative"]),
            "variations_delimiter": Dropdown("Select joining char", ["comma", "space"]),
            "margin_size": Slider("Grid margins (px)", 0, 500, 0, step=2),
        }

    def api_args(self, positional: Sequence[Any], is_img2img: bool) -> dict[str, Any]:
        return args_by_position(self.title(), A1111_ARGS, positional)

    @staticmethod
    def _parts(p: Txt2ImgRequest, prompt_type: str) -> tuple[str, list[str]]:
        """The prompt's fixed part and its optional parts (after '|'), at most ``MAX_VARIABLE_PARTS``."""
        text = p.prompt if prompt_type == "positive" else p.negative_prompt
        base, *parts = [part.strip() for part in text.split("|")]
        if not parts:
            raise ValueError("Prompt matrix: write the optional parts after '|', e.g. 'a castle|at night|in snow'")
        if len(parts) > MAX_VARIABLE_PARTS:
            raise ValueError(f"Prompt matrix: at most {MAX_VARIABLE_PARTS} parts after '|', got {len(parts)}")
        return base, parts

    def check(self, p: Txt2ImgRequest, model: Any, **args: Any) -> None:
        """Refuse at submit time (422 naming script_args) a matrix over ``MAX_VARIABLE_PARTS``
        parts; a prompt without parts is left to ``run``, which reports it (the plain image is made)."""
        text = p.prompt if args.get("prompt_type", "positive") == "positive" else p.negative_prompt
        if text.count("|") > MAX_VARIABLE_PARTS:
            try:
                self._parts(p, args.get("prompt_type", "positive"))
            except ValueError as error:
                raise ScriptCheckError(str(error)) from None

    def run(self, p: Txt2ImgRequest, put_at_start: bool, different_seeds: bool, prompt_type: str,
            variations_delimiter: str, margin_size: int) -> Processed:
        p = with_fixed_seeds(p)
        base, parts = self._parts(p, prompt_type)
        joiner = ", " if variations_delimiter == "comma" else " "
        results = []
        for combination in range(2 ** len(parts)):
            chosen = [part for k, part in enumerate(parts) if combination >> k & 1]
            words = [*chosen, base] if put_at_start else [base, *chosen]
            written = joiner.join(w for w in words if w)
            fields = {"prompt": written} if prompt_type == "positive" else {"negative_prompt": written}
            seed = p.seed + combination if different_seeds else p.seed
            part = self.process_images(dataclasses.replace(p, **fields, seed=seed, batch_count=1, batch_size=1))
            results.append(part)
            if part.interrupted or not part.images:
                break
        result = merge_results(results)
        if len(result.images) < 2 ** len(parts):
            return result  # interrupted: no grid of a partial matrix
        cols = 2 ** math.ceil(len(parts) / 2)
        col_bits, row_bits = range(0, math.ceil(len(parts) / 2)), range(math.ceil(len(parts) / 2), len(parts))
        col_labels = _labels(parts, col_bits)[:cols]
        row_labels = [_labels(parts, row_bits)[r * cols] for r in range(2 ** len(parts) // cols)]
        grid = image_grid(result.images, cols, row_labels, col_labels, margin_size)
        self.save_grid(grid, p, result.infotexts[0])
        return prepend_grid(result, grid)
