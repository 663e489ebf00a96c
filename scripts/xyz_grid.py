"""X/Y/Z plot (A1111's built-in script): one image per combination of up to three axes' values,
laid out in a labelled grid (one grid per Z value, side by side).

Values are written as A1111 writes them: a comma-separated list (CSV: quote a value that holds
a comma), ranges ``1-5`` (1,2,3,4,5), ``1-5 (+2)`` (1,3,5), ``10-1 (-3)`` and ``1-10 [5]``
(five evenly spaced values), for numbers also ``0.5-1.5 (+0.25)``. "Prompt S/R" replaces its
first value, which must be in the prompt, by each value in turn.

A1111 clients send ``script_args`` as A1111 1.10's list (see ``XYZPlot.api_args``): each axis
type is an index into A1111's axis list for the tab (``a1111_axes``) or its label, and an axis
that offers choices takes its values from the dropdown list that follows its text. An A1111
axis this plot does not have is refused, naming it. Forge's "Distilled CFG Scale" axis
(FLUX.1-dev's distilled guidance) is not in A1111's list, so it is named by its label.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modules.extensions.api import (
    MAX_SCRIPT_IMAGES,
    Checkbox,
    Dropdown,
    Processed,
    Script,
    ScriptArgError,
    ScriptCheckError,
    Slider,
    Textbox,
    TooManyImagesError,
    Txt2ImgRequest,
    args_by_position,
    image_grid,
    merge_results,
    with_fixed_seeds,
)

#: A plot of more cells than this is refused when it is submitted, rather than queued for hours.
MAX_CELLS = MAX_SCRIPT_IMAGES


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
            raise TooManyImagesError(f"{axis} values: {entry!r} asks for {count} values")
        return [kind(v) for v in np.linspace(start, end, count)]
    step = kind(float(match.group(3).replace(" ", ""))) if match.group(3) else (1 if end >= start else -1)
    if step == 0 or (end - start) / step < 0:
        raise ValueError(f"{axis} values: {entry!r} never gets from {start} to {end}")
    if (end - start) / step + 1 > MAX_CELLS:
        raise TooManyImagesError(f"{axis} values: {entry!r} makes more than {MAX_CELLS} values")
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
        raise TooManyImagesError(f"{axis} values: more than {MAX_CELLS}")
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
    "Distilled CFG Scale": Axis(float, _field("distilled_cfg_scale")),  # Forge's axis (FLUX.1-dev)
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


#: A1111 1.10's axis list in its order: (label, the one tab it is on, or "" for both, whether
#: it offers a dropdown of choices). Its indexes count on the list as filtered for the tab.
A1111_AXES: tuple[tuple[str, str, bool], ...] = (
    ("Nothing", "", False), ("Seed", "", False), ("Var. seed", "", False), ("Var. strength", "", False),
    ("Steps", "", False), ("Hires steps", "txt2img", False), ("CFG Scale", "", False),
    ("Image CFG Scale", "img2img", False), ("Prompt S/R", "", False), ("Prompt order", "", False),
    ("Sampler", "txt2img", True), ("Hires sampler", "txt2img", True), ("Sampler", "img2img", True),
    ("Checkpoint name", "", True), ("Negative Guidance minimum sigma", "", False), ("Sigma Churn", "", False),
    ("Sigma min", "", False), ("Sigma max", "", False), ("Sigma noise", "", False), ("Schedule type", "", True),
    ("Schedule min sigma", "", False), ("Schedule max sigma", "", False), ("Schedule rho", "", False),
    ("Beta schedule alpha", "", False), ("Beta schedule beta", "", False), ("Eta", "", False),
    ("Clip skip", "", False), ("Denoising", "", False), ("Initial noise multiplier", "", False),
    ("Extra noise", "", False), ("Hires upscaler", "txt2img", True), ("Cond. Image Mask Weight", "img2img", False),
    ("VAE", "", True), ("Styles", "", True), ("UniPC Order", "", False), ("Face restore", "", False),
    ("Token merging ratio", "", False), ("Token merging ratio high-res", "", False),
    ("Always discard next-to-last sigma", "", True), ("SGM noise multiplier", "", True),
    ("Refiner checkpoint", "", True), ("Refiner switch at", "", False), ("RNG source", "", True),
    ("FP8 mode", "", True), ("Size", "", False),
)
#: A1111 1.10's ``run(p, *args)`` order: three values per axis, then these.
A1111_AXIS_ARGS = tuple(f"{axis}_{part}" for axis in "xyz" for part in ("type", "values", "values_dropdown"))
A1111_OPTIONS = ("draw_legend", "include_lone_images", "include_sub_grids", "no_fixed_seeds", "vary_seeds_x",
                 "vary_seeds_y", "vary_seeds_z", "margin_size", "csv_mode")
#: Before A1111 1.7 (no "Vary seeds"), with ``csv_mode`` from 1.3: a number at position 13 says so.
A1111_OPTIONS_BEFORE_1_7 = ("draw_legend", "include_lone_images", "include_sub_grids", "no_fixed_seeds",
                            "margin_size", "csv_mode")


def a1111_axes(is_img2img: bool) -> list[tuple[str, bool]]:
    """A1111's axis list for a tab as (label, offers choices), in the order its indexes count."""
    tab = "img2img" if is_img2img else "txt2img"
    return [(label, choices) for label, only, choices in A1111_AXES if only in ("", tab)]


def _csv_line(values: Sequence[str]) -> str:
    """Values as one CSV line (a value holding a comma quoted), as A1111 joins a dropdown's values."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue().strip()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


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

    def api_args(self, positional: Sequence[Any], is_img2img: bool) -> dict[str, Any]:
        """A1111's list: ``x_type, x_values, x_values_dropdown`` (then Y's and Z's), then
        ``A1111_OPTIONS`` (before 1.7: ``A1111_OPTIONS_BEFORE_1_7``). A type is an index into
        ``a1111_axes(is_img2img)`` or its label; an axis with choices reads its values from the
        dropdown list unless ``csv_mode`` (or the list is empty: then from the text)."""
        values = list(positional)
        before_1_7 = len(values) in (14, 15) and _is_number(values[13])
        names = (*A1111_AXIS_ARGS, *(A1111_OPTIONS_BEFORE_1_7 if before_1_7 else A1111_OPTIONS))
        named = args_by_position(self.title(), names, values)
        csv_mode = named.pop("csv_mode", False)
        if not isinstance(csv_mode, bool):
            raise ScriptArgError(f"{self.title()}: script_args[{names.index('csv_mode')}] (csv_mode): expected true "
                                 f"or false, got {csv_mode!r}")
        offered = self.ui(is_img2img)["x_type"].choices
        for k, axis in enumerate("xyz"):
            dropdown = self._dropdown(named.pop(f"{axis}_values_dropdown", None), 3 * k + 2)
            if f"{axis}_type" not in named:
                continue
            label, choices = self._a1111_axis(named[f"{axis}_type"], 3 * k, is_img2img, offered)
            named[f"{axis}_type"] = label
            if named.get(f"{axis}_values") is None:
                named[f"{axis}_values"] = ""
            if choices and dropdown and not csv_mode:
                named[f"{axis}_values"] = _csv_line(dropdown)
        return named

    def _dropdown(self, value: Any, position: int) -> list[str]:
        if value is None or value == "":
            return []
        if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
            return list(value)
        raise ScriptArgError(f"{self.title()}: script_args[{position}]: expected a list of values, got {value!r}")

    def _a1111_axis(self, value: Any, position: int, is_img2img: bool, offered: Sequence[str]) -> tuple[str, bool]:
        """Our axis for A1111's axis ``value`` (index or label), and whether it offers choices."""
        axes = a1111_axes(is_img2img)
        tab = "img2img" if is_img2img else "txt2img"
        where = f"{self.title()}: script_args[{position}]"
        if _is_number(value) and float(value).is_integer() and 0 <= value < len(axes):
            label, choices = axes[int(value)]
            shown = f"{label!r} (index {int(value)} on {tab})"
        elif isinstance(value, str) and (found := [a for a in axes if a[0].casefold() == value.strip().casefold()]):
            (label, choices), shown = found[0], repr(found[0][0])
        elif isinstance(value, str) and (ours := [n for n in offered if n.casefold() == value.strip().casefold()]):
            # An axis A1111 1.10 lacks (Forge's "Distilled CFG Scale") goes by its label only: indexes
            # keep A1111's numbering (Forge's list, with this axis inserted, shifts every later index).
            label, choices, shown = ours[0], False, repr(ours[0])
        elif _is_number(value):
            raise ScriptArgError(f"{where}: {value!r} is not an axis index; A1111's {tab} axes are 0..{len(axes) - 1} "
                                 f"({', '.join(f'{i} {name}' for i, (name, _) in enumerate(axes))})")
        else:
            raise ScriptArgError(f"{where}: expected an axis index or name, got {value!r}; "
                                 f"supported: {', '.join(offered)}")
        if label not in offered:
            raise ScriptArgError(f"{where}: X/Y/Z axis {shown} is not supported here; supported: {', '.join(offered)}")
        return label, choices

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

    def _axes(self, p: Txt2ImgRequest, args: dict[str, Any]) -> tuple[list[str], list[list[Any]], dict[str, str]]:
        """The axis types, their values and the Prompt S/R search words, checked: values parse, the
        S/R word is in the prompt, and the plot (cells times the batch size) is within ``MAX_CELLS``."""
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
        if cells * p.batch_size > MAX_CELLS:
            made = f"{cells} cells of {p.batch_size} images" if p.batch_size > 1 else f"{cells} images"
            raise TooManyImagesError(f"X/Y/Z plot: {made} is more than {MAX_CELLS} images")
        return types, axes, search

    def check(self, p: Txt2ImgRequest, model: Any, **args: Any) -> None:
        """Refuse at submit time (422 naming script_args) a plot over ``MAX_CELLS``; other bad
        values are left to ``run``, which reports them while the plain image is made."""
        try:
            self._axes(p, args)
        except TooManyImagesError as error:
            raise ScriptCheckError(str(error)) from None
        except ValueError:
            return

    def run(self, p: Txt2ImgRequest, **args: Any) -> Processed:
        types, axes, search = self._axes(p, args)
        if not args["no_fixed_seeds"]:
            p = with_fixed_seeds(p)
        # Every cell's request is built (and so validated) before the first image is made.
        x_count = len(axes[0]) if args["vary_seeds_x"] else 1
        y_count = len(axes[1]) if args["vary_seeds_y"] else 1
        requests = []
        for iz, z in enumerate(axes[2]):
            for iy, y in enumerate(axes[1]):
                for ix, x in enumerate(axes[0]):
                    cell = self._cell_request(dataclasses.replace(p, batch_count=1), types, [x, y, z], search)
                    # A1111 numbers the varied cells row by row over the varied axes only, after
                    # the axes are applied (so a Seed axis is varied too).
                    offset = (ix * args["vary_seeds_x"] + iy * args["vary_seeds_y"] * x_count
                              + iz * args["vary_seeds_z"] * x_count * y_count)
                    if offset and cell.seed >= 0:
                        cell = dataclasses.replace(cell, seed=cell.seed + offset)
                    requests.append(cell)
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
