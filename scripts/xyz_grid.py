"""X/Y/Z plot (A1111's built-in script): one image per combination of up to three axes' values,
laid out in a labelled grid (one grid per Z value, side by side).

Values are written as A1111 writes them: a comma-separated list (CSV: quote a value that holds
a comma), ranges ``1-5`` (1,2,3,4,5), ``1-5 (+2)`` (1,3,5), ``10-1 (-3)`` and ``1-10 [5]``
(five evenly spaced values), for numbers also ``0.5-1.5 (+0.25)``. "Prompt S/R" replaces its
first value, which must be in the prompt, by each value in turn.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from modules.extensions.api import (
    Checkbox,
    Dropdown,
    Processed,
    Script,
    Slider,
    Textbox,
    Txt2ImgRequest,
    image_grid,
    merge_results,
    with_fixed_seeds,
)

#: A plot of more cells than this is refused rather than queued for hours.
MAX_CELLS = 1000
_RANGE = re.compile(r"^\s*([+-]?\s*\d+(?:\.\d*)?)\s*-\s*([+-]?\s*\d+(?:\.\d*)?)"
                    r"(?:\s*\(([+-]\s*\d+(?:\.\d*)?)\s*\)|\s*\[(\d+)\s*\])?\s*$")


def _entries(text: str) -> list[str]:
    return [entry.strip() for row in csv.reader(io.StringIO(text), skipinitialspace=True) for entry in row
            if entry.strip()]


def _expand(entry: str, kind: type, axis: str) -> list[Any]:
    """One entry: a range (with step or count) or a single number."""
    match = _RANGE.match(entry)
    if match is None:
        try:
            return [kind(entry)]
        except ValueError:
            noun = "whole number" if kind is int else "number"
            raise ValueError(f"{axis} values: {entry!r} is not a {noun} or a range") from None
    start, end = (kind(float(g.replace(" ", ""))) for g in match.group(1, 2))
    if match.group(4) is not None:  # [count]: evenly spaced, ends included
        count = int(match.group(4))
        if not 1 <= count <= MAX_CELLS:
            raise ValueError(f"{axis} values: {entry!r} asks for {count} values")
        return [kind(v) for v in np.linspace(start, end, count)]
    step = kind(float(match.group(3).replace(" ", ""))) if match.group(3) else (1 if end >= start else -1)
    if step == 0 or (end - start) / step < 0:
        raise ValueError(f"{axis} values: {entry!r} never gets from {start} to {end}")
    if (end - start) / step + 1 > MAX_CELLS:
        raise ValueError(f"{axis} values: {entry!r} makes more than {MAX_CELLS} values")
    count = int((end - start) / step + 1e-9) + 1
    return [kind(round(start + k * step, 10)) for k in range(count)]


def parse_axis_values(text: str, kind: type, axis: str = "X") -> list[Any]:
    """The values an axis box holds, as ``kind`` (int, float or str).

    Raises:
        ValueError: an entry that is neither a value nor a range, or too many values; the
            message names the axis and quotes the entry.
    """
    entries = _entries(text)
    if kind is str:
        return entries
    values = [value for entry in entries for value in _expand(entry, kind, axis)]
    if len(values) > MAX_CELLS:
        raise ValueError(f"{axis} values: more than {MAX_CELLS}")
    return values


@dataclass(frozen=True)
class Axis:
    """An axis type: how its values read and how one changes a request (``apply(script, p, value)``)."""

    kind: type
    apply: Callable[[Script, Txt2ImgRequest, Any], Txt2ImgRequest]
    img2img_only: bool = False


def _field(name: str) -> Callable[[Script, Txt2ImgRequest, Any], Txt2ImgRequest]:
    return lambda script, p, value: dataclasses.replace(p, **{name: value})


def _size(script: Script, p: Txt2ImgRequest, value: str) -> Txt2ImgRequest:
    width, _, height = value.lower().partition("x")
    try:
        return dataclasses.replace(p, width=int(width), height=int(height))
    except ValueError:
        raise ValueError(f"Size values: {value!r} is not WIDTHxHEIGHT") from None


AXES: dict[str, Axis] = {
    "Nothing": Axis(str, lambda script, p, value: p),
    "Seed": Axis(int, _field("seed")),
    "Var. seed": Axis(int, _field("subseed")),
    "Var. strength": Axis(float, _field("subseed_strength")),
    "Steps": Axis(int, _field("num_inference_steps")),
    "CFG Scale": Axis(float, _field("guidance_scale")),
    "Prompt S/R": Axis(str, lambda script, p, value: p),  # replaced in _cell_request: needs the search word
    "Sampler": Axis(str, _field("sampler_name")),
    "Schedule type": Axis(str, _field("scheduler")),
    "Checkpoint name": Axis(str, _field("checkpoint")),
    "Denoising": Axis(float, _field("strength"), img2img_only=True),
    "Clip skip": Axis(int, _field("clip_skip")),
    "VAE": Axis(str, _field("vae")),
    "Styles": Axis(str, lambda script, p, value: script.apply_styles(p, [s.strip() for s in value.split("|")])),
    "Size": Axis(str, _size),
}


def _axis_values(kind_name: str, text: str, axis: str, is_img2img: bool) -> list[Any]:
    axis_type = AXES[kind_name]
    if axis_type.img2img_only and not is_img2img:
        raise ValueError(f"{axis} type {kind_name!r} works on img2img only")
    if kind_name == "Nothing":
        return [None]
    values = parse_axis_values(text, axis_type.kind, axis)
    if not values:
        raise ValueError(f"{axis} values: none given for {kind_name}")
    return values


def _label(kind_name: str, value: Any) -> str:
    return "" if kind_name == "Nothing" else f"{kind_name}: {value}"


class XYZPlot(Script):
    def title(self) -> str:
        return "X/Y/Z plot"

    def ui(self, is_img2img: bool) -> dict:
        names = [name for name, axis in AXES.items() if is_img2img or not axis.img2img_only]
        args: dict = {}
        for axis, default in (("x", "Seed"), ("y", "Nothing"), ("z", "Nothing")):
            args[f"{axis}_type"] = Dropdown(f"{axis.upper()} type", names, default)
            args[f"{axis}_values"] = Textbox(f"{axis.upper()} values")
        return {**args, "draw_legend": Checkbox("Draw legend", True),
                "no_fixed_seeds": Checkbox("Keep -1 for seeds"),
                "vary_seeds_x": Checkbox("Vary seeds for X"), "vary_seeds_y": Checkbox("Vary seeds for Y"),
                "vary_seeds_z": Checkbox("Vary seeds for Z"),
                "include_lone_images": Checkbox("Include Sub Images"),
                "include_sub_grids": Checkbox("Include Sub Grids"),
                "margin_size": Slider("Grid margins (px)", 0, 500, 0, step=2)}

    def _cell_request(self, p: Txt2ImgRequest, types: list[str], values: list[Any], search: dict[str, str],
                      ) -> Txt2ImgRequest:
        for kind_name, value in zip(types, values, strict=True):
            if kind_name == "Prompt S/R":
                word = search[kind_name]
                p = dataclasses.replace(p, prompt=p.prompt.replace(word, value),
                                        negative_prompt=p.negative_prompt.replace(word, value))
            else:
                p = AXES[kind_name].apply(self, p, value)
        return p

    def run(self, p: Txt2ImgRequest, **args: Any) -> Processed:
        is_img2img = hasattr(p, "init_images")
        types = [args["x_type"], args["y_type"], args["z_type"]]
        axes = [_axis_values(t, args[f"{a}_values"], a.upper(), is_img2img) for t, a in zip(types, "xyz", strict=True)]
        search = {}
        if "Prompt S/R" in types:
            word = axes[types.index("Prompt S/R")][0]
            if word not in p.prompt and word not in p.negative_prompt:
                raise ValueError(f"Prompt S/R: {word!r} (the first value) is not in the prompt")
            search["Prompt S/R"] = word
        cells = len(axes[0]) * len(axes[1]) * len(axes[2])
        if cells > MAX_CELLS:
            raise ValueError(f"X/Y/Z plot: {cells} images is more than {MAX_CELLS}")
        if not args["no_fixed_seeds"]:
            p = with_fixed_seeds(p)
        # Every cell's request is built (and so validated) before the first image is made.
        requests = []
        for iz, z in enumerate(axes[2]):
            for iy, y in enumerate(axes[1]):
                for ix, x in enumerate(axes[0]):
                    cell = dataclasses.replace(p, batch_count=1)
                    offset = ix * args["vary_seeds_x"] + iy * args["vary_seeds_y"] + iz * args["vary_seeds_z"]
                    if offset and cell.seed >= 0:
                        cell = dataclasses.replace(cell, seed=cell.seed + offset)
                    requests.append(self._cell_request(cell, types, [x, y, z], search))
        return self._plot(p, requests, axes, types, args)

    def _plot(self, p: Txt2ImgRequest, requests: list[Txt2ImgRequest], axes: list[list[Any]], types: list[str],
              args: dict[str, Any]) -> Processed:
        parts = []
        for request in requests:
            parts.append(self.process_images(request))
            if parts[-1].interrupted:
                return merge_results(parts)
        firsts = [part.images[0] for part in parts if part.images]
        if len(firsts) != len(parts):
            return merge_results(parts)  # a skipped cell: no grid with a hole in it
        per_grid = len(axes[0]) * len(axes[1])
        legend = args["draw_legend"]
        col_labels = [_label(types[0], x) for x in axes[0]] if legend and types[0] != "Nothing" else []
        row_labels = [_label(types[1], y) for y in axes[1]] if legend and types[1] != "Nothing" else []
        grids = [image_grid(firsts[k * per_grid:(k + 1) * per_grid], len(axes[0]), row_labels, col_labels,
                            args["margin_size"]) for k in range(len(axes[2]))]
        z_labels = [_label(types[2], z) for z in axes[2]] if legend and types[2] != "Nothing" else []
        main = grids[0] if len(grids) == 1 else image_grid(grids, len(grids), col_labels=z_labels,
                                                           margin=args["margin_size"])
        self.save_grid(main, p, parts[0].infotexts[0])
        result = merge_results(parts)
        info, seed, subseed = parts[0].infotexts[0], parts[0].seeds[0], parts[0].subseeds[0]
        if not args["include_lone_images"]:
            result.images, result.seeds, result.subseeds, result.infotexts = [], [], [], []
        shown = [main, *(grids if args["include_sub_grids"] and len(grids) > 1 else [])]
        result.images[:0], result.infotexts[:0] = shown, [info] * len(shown)
        result.seeds[:0], result.subseeds[:0] = [seed] * len(shown), [subseed] * len(shown)
        return result
