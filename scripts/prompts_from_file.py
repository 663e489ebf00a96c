"""Prompts from file or textbox (A1111's built-in script): one generation per line.

A plain line is a prompt. A line starting with ``--`` sets fields the way A1111's script
reads them (shell quoting): ``--prompt "a cat, sitting" --steps 30 --cfg_scale 7.5
--sampler_name "Euler a" --styles "Style A" "Style B"``. A bad line is refused before
anything runs, naming its number and the option.

A1111 clients send ``script_args: [checkbox_iterate, checkbox_iterate_batch, prompt_position,
prompt_txt]``; the three values of A1111 versions before "Insert prompts at the" (no
``prompt_position``) are read too.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Sequence
from typing import Any

from modules.extensions.api import (
    MAX_SCRIPT_IMAGES,
    Checkbox,
    Dropdown,
    Processed,
    Script,
    ScriptCheckError,
    Textbox,
    TooManyImagesError,
    Txt2ImgRequest,
    args_by_position,
    merge_results,
    with_fixed_seeds,
)

#: A pasted file of tens of thousands of lines should not silently queue a day of work.
MAX_LINES = MAX_SCRIPT_IMAGES
#: A1111's ``run(p, *args)`` order, after ``p``; older versions sent the first two and the text.
A1111_ARGS = ("checkbox_iterate", "checkbox_iterate_batch", "prompt_position", "prompt_txt")
POSITIONS = ("start", "end")


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


# A1111's tags and how their values read; "styles" takes every value up to the next tag.
TAGS: dict[str, Any] = {
    "sd_model": str, "outpath_samples": str, "outpath_grids": str, "prompt_for_display": str, "prompt": str,
    "negative_prompt": str, "styles": list, "seed": _int, "subseed_strength": _float, "subseed": _int,
    "seed_resize_from_h": _int, "seed_resize_from_w": _int, "sampler_index": _int, "sampler_name": str,
    "batch_size": _int, "n_iter": _int, "steps": _int, "cfg_scale": _float, "width": _int, "height": _int,
    "restore_faces": _bool, "tiling": _bool, "do_not_save_samples": _bool, "do_not_save_grid": _bool,
}
# Our request's names for the tags that change a generation.
REQUEST_FIELDS = {
    "prompt": "prompt", "negative_prompt": "negative_prompt", "seed": "seed", "subseed": "subseed",
    "subseed_strength": "subseed_strength", "seed_resize_from_h": "seed_resize_from_h",
    "seed_resize_from_w": "seed_resize_from_w", "sampler_name": "sampler_name", "batch_size": "batch_size",
    "n_iter": "batch_count", "steps": "num_inference_steps", "cfg_scale": "guidance_scale", "width": "width",
    "height": "height", "tiling": "tiling", "sd_model": "checkpoint",
}


def _options(words: list[str], number: int) -> dict[str, Any]:
    options: dict[str, Any] = {}
    index = 0
    while index < len(words):
        word = words[index]
        tag = word[2:]
        if not word.startswith("--") or tag not in TAGS:
            raise ValueError(f"line {number}: unknown option {word!r}")
        values = []
        index += 1
        while index < len(words) and not words[index].startswith("--"):
            values.append(words[index])
            index += 1
        kind = TAGS[tag]
        if kind is list:
            options[tag] = values
        elif not values and kind is _bool:
            options[tag] = True
        elif len(values) != 1:
            raise ValueError(f"line {number}: --{tag} takes one value, got {len(values)}")
        else:
            try:
                options[tag] = kind(values[0])
            except ValueError as error:
                raise ValueError(f"line {number}: --{tag}: {error}") from None
    return options


def parse_prompt_lines(text: str) -> list[dict[str, Any]]:
    """One dict of A1111 tags per non-empty line (a plain line is ``{"prompt": line}``).

    Raises:
        ValueError: an unknown option, a missing or mistyped value, unbalanced quotes, or more
            than ``MAX_LINES`` lines; the message names the line number (counting all lines).
    """
    jobs = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if len(jobs) == MAX_LINES:
            raise ValueError(f"more than {MAX_LINES} prompts; split the list")
        if not line.startswith("--"):
            jobs.append({"prompt": line})
            continue
        try:
            words = shlex.split(line)
        except ValueError as error:
            raise ValueError(f"line {number}: {error}") from None
        jobs.append(_options(words, number))
    return jobs


class PromptsFromFile(Script):
    def title(self) -> str:
        return "Prompts from file or textbox"

    def ui(self, is_img2img: bool) -> dict:
        return {
            "checkbox_iterate": Checkbox("Iterate seed every line"),
            "checkbox_iterate_batch": Checkbox("Use same random seed for all lines"),
            "prompt_position": Dropdown("Insert prompts at the", POSITIONS, "start"),
            "prompt_txt": Textbox("List of prompt inputs"),
        }

    def api_args(self, positional: Sequence[Any], is_img2img: bool) -> dict[str, Any]:
        if len(positional) == 3 and positional[2] not in POSITIONS:  # before A1111 had prompt_position
            positional = [positional[0], positional[1], "start", positional[2]]
        return args_by_position(self.title(), A1111_ARGS, positional)

    @staticmethod
    def _lines(p: Txt2ImgRequest, prompt_txt: str) -> list[dict[str, Any]]:
        """The lines' options, checked: at least one, and ``MAX_SCRIPT_IMAGES`` images in all
        (each line makes its ``--n_iter`` x ``--batch_size``, the request's where it does not say)."""
        jobs = parse_prompt_lines(prompt_txt)
        if not jobs:
            raise ValueError("Prompts from file: the list of prompt inputs is empty")
        # A bad count (0, negative) counts as 1 here; building the line's request refuses it.
        images = sum(max(1, job.get("n_iter", p.batch_count)) * max(1, job.get("batch_size", p.batch_size))
                     for job in jobs)
        if images > MAX_SCRIPT_IMAGES:
            raise TooManyImagesError(f"Prompts from file: {len(jobs)} prompts make {images} images, more than "
                                     f"{MAX_SCRIPT_IMAGES}; split the list or lower the batch count")
        return jobs

    def check(self, p: Txt2ImgRequest, model: Any, **args: Any) -> None:
        """Refuse at submit time (422 naming script_args) a list over ``MAX_LINES`` lines or
        ``MAX_SCRIPT_IMAGES`` images; a bad line is left to ``run``, which reports it."""
        text = args.get("prompt_txt", "")
        if not isinstance(text, str):
            return
        if sum(1 for line in text.splitlines() if line.strip()) > MAX_LINES:
            raise ScriptCheckError(f"Prompts from file: more than {MAX_LINES} prompts; split the list")
        try:
            self._lines(p, text)
        except TooManyImagesError as error:
            raise ScriptCheckError(str(error)) from None
        except ValueError:
            return

    def run(self, p: Txt2ImgRequest, checkbox_iterate: bool, checkbox_iterate_batch: bool, prompt_position: str,
            prompt_txt: str) -> Processed:
        jobs = self._lines(p, prompt_txt)
        if checkbox_iterate or checkbox_iterate_batch:
            p = with_fixed_seeds(p)
        # Every line becomes a request before anything runs, so a bad value stops the job at once.
        requests = [self._request(p, options, number, checkbox_iterate, prompt_position)
                    for number, options in enumerate(jobs)]
        results = []
        for request in requests:
            results.append(self.process_images(request))
            if results[-1].interrupted:
                break
        result = merge_results(results)
        unused = sorted({tag for options in jobs for tag in options if tag not in (*REQUEST_FIELDS, "styles")})
        if unused:
            result.notices.append(f"Prompts from file: not applied here: {', '.join('--' + t for t in unused)}")
        return result

    def _request(self, p: Txt2ImgRequest, options: dict[str, Any], number: int, iterate_seed: bool,
                 position: str) -> Txt2ImgRequest:
        fields = {REQUEST_FIELDS[tag]: value for tag, value in options.items() if tag in REQUEST_FIELDS}
        for key in ("prompt", "negative_prompt"):
            if key in fields and getattr(p, key):
                # The box's prompt is kept; a line's text goes before or after it.
                box = getattr(p, key)
                fields[key] = f"{fields[key]} {box}" if position == "start" else f"{box} {fields[key]}"
        if iterate_seed and "seed" not in fields:
            fields["seed"] = p.seed + number * p.images_per_job
        try:
            request = dataclasses.replace(p, **fields)
            return self.apply_styles(request, options["styles"]) if options.get("styles") else request
        except ValueError as error:
            raise ValueError(f"prompt {number + 1} of the list: {error}") from None
