"""Loopback (A1111's built-in img2img script): feed each output back in as the next input.

The denoising strength moves from the request's value to "Final denoising strength" over
the loops, along the chosen curve: Linear, Aggressive (most of the change early, a sine) or
Lazy (most of it late, one minus a cosine). Each loop uses the next seed, as A1111 does.

A1111 clients send ``script_args: [loops, final_denoising_strength, denoising_curve,
append_interrogation]``. Appending an interrogated prompt ("CLIP", "DeepBooru") would change
every loop's prompt and this studio has no interrogator, so only "None" is accepted.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from modules.extensions.api import (
    Dropdown,
    Img2ImgRequest,
    Processed,
    Script,
    ScriptArgError,
    Slider,
    args_by_position,
    image_grid,
    merge_results,
    prepend_grid,
    with_fixed_seeds,
)

CURVES = ("Linear", "Aggressive", "Lazy")
#: A1111's ``run(p, *args)`` order, after ``p``.
A1111_ARGS = ("loops", "final_denoising_strength", "denoising_curve", "append_interrogation")
#: A1111's "Append interrogated prompt at each iteration" choices.
INTERROGATIONS = ("None", "CLIP", "DeepBooru")


def loop_strength(loop: int, loops: int, initial: float, final: float, curve: str) -> float:
    """Denoising strength of 0-based ``loop`` out of ``loops`` (``initial`` at the first, ``final`` at the last)."""
    if loops == 1:
        return initial
    progress = loop / (loops - 1)
    if curve == "Aggressive":
        progress = math.sin(progress * math.pi / 2)
    elif curve == "Lazy":
        progress = 1 - math.cos(progress * math.pi / 2)
    # Rounded so the infotext reads 0.45, not 0.44999999999999996.
    return round(initial + (final - initial) * progress, 6)


class Loopback(Script):
    def title(self) -> str:
        return "Loopback"

    def show(self, is_img2img: bool) -> bool:
        return is_img2img

    def ui(self, is_img2img: bool) -> dict:
        return {
            "loops": Slider("Loops", 1, 32, 4, step=1),
            "final_denoising_strength": Slider("Final denoising strength", 0.0, 1.0, 0.5, step=0.01),
            "denoising_curve": Dropdown("Denoising strength curve", CURVES, "Linear"),
        }

    def api_args(self, positional: Sequence[Any], is_img2img: bool) -> dict[str, Any]:
        named = args_by_position(self.title(), A1111_ARGS, positional)
        interrogation = named.pop("append_interrogation", None) or "None"
        if interrogation not in INTERROGATIONS:
            raise ScriptArgError(f"{self.title()}: script_args[3] (append_interrogation): {interrogation!r} is not "
                                 f"one of {', '.join(INTERROGATIONS)}")
        if interrogation != "None":
            raise ScriptArgError(f"{self.title()}: script_args[3] (append_interrogation): {interrogation!r} needs an "
                                 "interrogator, which this studio does not have; send \"None\"")
        return named

    def run(self, p: Img2ImgRequest, loops: int, final_denoising_strength: float,
            denoising_curve: str) -> Processed:
        p = with_fixed_seeds(p)
        inputs = p.init_images
        history: list[Processed] = []
        for loop in range(loops):
            strength = loop_strength(loop, loops, p.strength, final_denoising_strength, denoising_curve)
            step = dataclasses.replace(p, init_images=tuple(inputs), strength=strength, seed=p.seed + loop,
                                       batch_count=1)
            part = self.process_images(step)
            history.append(part)
            if part.interrupted or not part.images:
                break
            inputs = part.images
        result = merge_results(history)
        if len(history) < 2:
            return result
        # One row per image of the batch, one column per loop.
        per_loop = len(history[0].images)
        if any(len(part.images) != per_loop for part in history):
            return result  # a skipped batch left gaps: no grid
        cells = [history[loop].images[k] for k in range(per_loop) for loop in range(len(history))]
        grid = image_grid(cells, len(history), col_labels=[f"Loop {n + 1}" for n in range(len(history))])
        self.save_grid(grid, p, result.infotexts[-1])
        return prepend_grid(result, grid)
