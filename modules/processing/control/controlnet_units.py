"""ControlNet units: what one unit asks for, in the field names of A1111's sd-webui-controlnet
API, and the arithmetic that turns its control map into UNet residuals for one step.

A unit is a ``dict`` of the fields in ``UNIT_DEFAULTS`` (what the script API's ``Group``
hands the hooks). ``normalize_unit`` accepts the forms existing clients send: integer or
differently capitalised modes, ``"model [hash]"`` names, the old ``input_image``, ``guidance``
and ``guessmode`` fields, and ``enabled`` left out (an API unit that is sent is on).
``ignored_fields`` names what else a client sent, and ``clamp_unit`` puts out-of-range numbers
back in range as sd-webui-controlnet does, saying what it changed.

Control modes follow sd-webui-controlnet: "My prompt is more important" and "ControlNet is
more important" scale the residual of skip connection ``i`` of ``n`` by
``0.825 ** (n - 1 - i)`` (deep blocks keep most of their control, shallow ones lose it), and
"ControlNet is more important" adds the control to the conditional rows only, so CFG pushes
the image towards the control rather than cancelling it out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from PIL import Image

from modules.processing.control.control_preprocess import (
    RESOLUTION_RANGE,
    PreprocessorInfo,
    ThresholdSlider,
    canonical_module,
)
from modules.processing.output.infotext import format_value
from modules.processing.sampling.hooks import UNetCall, UNetResiduals

__all__ = ["CONTROL_MODES", "LEGACY_FIELDS", "RESIZE_MODES", "UNIT_DEFAULTS", "clamp_unit", "control_hint",
           "control_scales", "fit_map", "ignored_fields", "normalize_unit", "parse_unit_infotext",
           "pixel_perfect_resolution", "unit_infotext", "unit_residuals", "unit_step_active"]

CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")
RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")
#: Per-block falloff of the two non-balanced control modes (sd-webui-controlnet's soft injection).
SOFT_INJECTION_BASE = 0.825

#: Every field of a unit and its default in the web UI; -1 resolution/thresholds mean the preprocessor's default.
UNIT_DEFAULTS: Mapping[str, Any] = {
    "enabled": False, "image": None, "module": "none", "model": "None", "weight": 1.0,
    "resize_mode": "Crop and Resize", "processor_res": -1, "threshold_a": -1.0, "threshold_b": -1.0,
    "guidance_start": 0.0, "guidance_end": 1.0, "pixel_perfect": False, "control_mode": "Balanced",
    "save_detected_map": True,
}
#: Older names of sd-webui-controlnet's API that ``normalize_unit`` reads into the fields above.
LEGACY_FIELDS = frozenset({"input_image", "guessmode", "guidance"})
#: The ranges sd-webui-controlnet's unit model allows for these fields.
_RANGES = {"weight": (0.0, 2.0), "guidance_start": (0.0, 1.0), "guidance_end": (0.0, 1.0)}

# Infotext keys of a unit (A1111's "ControlNet 0" value) and the fields they set back.
_INFOTEXT_KEYS = {"Module": "module", "Model": "model", "Weight": "weight", "Resize Mode": "resize_mode",
                  "Processor Res": "processor_res", "Threshold A": "threshold_a", "Threshold B": "threshold_b",
                  "Guidance Start": "guidance_start", "Guidance End": "guidance_end",
                  "Pixel Perfect": "pixel_perfect", "Control Mode": "control_mode"}
_HASH_SUFFIX = re.compile(r"\s*\[[0-9a-fA-F]{6,64}\]$")


def _mode(value: Any, modes: tuple[str, ...], field: str) -> Any:
    """A mode given as its index or in any capitalisation, as the canonical name."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(modes):
        return modes[value]
    if isinstance(value, str):
        for mode in modes:
            if value.strip().lower() == mode.lower():
                return mode
        # sd-webui-controlnet's Python enum names, which some clients send.
        aliases = {"resize": 0, "inner_fit": 1, "outer_fit": 2, "balanced": 0, "prompt": 1, "controlnet": 2}
        if value.strip().lower() in aliases:
            return modes[aliases[value.strip().lower()]]
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{field}: {value!r} is not one of {', '.join(modes)} (or 0-{len(modes) - 1})")
    return value


def normalize_unit(value: Any) -> dict[str, Any]:
    """A unit as a client sent it -> ``{field: value}`` in the canonical forms (not yet range-checked).

    None (no unit sent) is a switched-off unit; a dict without ``enabled`` is on.

    Raises:
        ValueError: not an object, or a mode that is neither a name nor an index.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a ControlNet unit object, got {type(value).__name__}")
    unit = dict(value)
    unit.setdefault("enabled", True)
    if unit.get("image") is None and unit.get("input_image") is not None:
        unit["image"] = unit["input_image"]
    if "guidance_end" not in unit and "guidance" in unit:
        unit["guidance_end"] = unit["guidance"]
    if "control_mode" not in unit and unit.get("guessmode") is True:
        unit["control_mode"] = CONTROL_MODES[2]
    if "resize_mode" in unit:
        unit["resize_mode"] = _mode(unit["resize_mode"], RESIZE_MODES, "resize_mode")
    if "control_mode" in unit:
        unit["control_mode"] = _mode(unit["control_mode"], CONTROL_MODES, "control_mode")
    if isinstance(unit.get("model"), str):
        unit["model"] = _HASH_SUFFIX.sub("", unit["model"]).strip() or "None"
        if unit["model"].lower() == "none":
            unit["model"] = "None"
    if isinstance(unit.get("module"), str):
        unit["module"] = canonical_module(unit["module"]) or "none"
    for name in ("weight", "threshold_a", "threshold_b", "guidance_start", "guidance_end"):
        if isinstance(unit.get(name), int) and not isinstance(unit.get(name), bool):
            unit[name] = float(unit[name])
    return unit


def ignored_fields(value: Mapping[str, Any]) -> list[str]:
    """The keys of a unit as a client sent it that no field here reads, sorted (other versions of
    sd-webui-controlnet and Forge send ``input_mode``, ``hr_option``, ``mask_image``, ...)."""
    return sorted(str(key) for key in value if key not in UNIT_DEFAULTS and key not in LEGACY_FIELDS)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _format(number: float) -> str:
    return format_value(float(number))


def clamp_unit(unit: Mapping[str, Any], info: PreprocessorInfo | None) -> tuple[dict[str, Any], list[str]]:
    """The normalized unit with its out-of-range numbers replaced, and what was replaced, in words.

    As sd-webui-controlnet: ``processor_res`` outside 64..2048 and a threshold outside its
    slider's range become the preprocessor's default (-1 stays "the default" and says nothing);
    ``weight`` (0..2) and ``guidance_start``/``guidance_end`` (0..1) are clamped to their range.
    ``info`` is the unit's preprocessor (None: an unknown one, whose sliders are left alone).
    Values that are not numbers are left for the field checks to refuse.
    """
    fixed, notices = dict(unit), []
    for name, (low, high) in _RANGES.items():
        value = fixed.get(name)
        if _is_number(value) and not low <= value <= high:
            fixed[name] = min(max(float(value), low), high)
            notices.append(f"{name} {_format(value)} is outside {_format(low)}..{_format(high)}; "
                           f"{_format(fixed[name])} was used")
    resolution = fixed.get("processor_res")
    low, high = RESOLUTION_RANGE
    if _is_number(resolution) and resolution != -1 and not low <= resolution <= high:
        fixed["processor_res"] = -1
        default = f" {info.resolution_default}" if info is not None and info.resolution_default > 0 else ""
        notices.append(f"processor_res {_format(resolution)} is outside {low}..{high}; "
                       f"the preprocessor's default{default} was used")
    if info is None:
        return fixed, notices
    for name, slider in (("threshold_a", info.threshold_a), ("threshold_b", info.threshold_b)):
        notice = _threshold_notice(name, fixed.get(name), slider, info.name)
        if notice:
            fixed[name] = -1.0
            notices.append(notice)
    return fixed, notices


def _threshold_notice(name: str, value: Any, slider: ThresholdSlider | None, module: str) -> str | None:
    """Why a threshold is replaced by its default, or None when it stays (a module without that
    slider ignores it)."""
    if slider is None or not _is_number(value) or value == -1 or slider.minimum <= value <= slider.maximum:
        return None
    return (f"{name} {_format(value)} is outside {_format(slider.minimum)}..{_format(slider.maximum)} "
            f"({slider.label} of {module}); the default {_format(slider.default)} was used")


def pixel_perfect_resolution(image_size: tuple[int, int], target_size: tuple[int, int], resize_mode: str) -> int:
    """The preprocessor resolution whose map needs no rescaling for the target (sd-webui-controlnet's
    "Pixel Perfect"): the image's short side times the scale that resize mode applies.

    ``image_size`` and ``target_size`` are (width, height) in pixels.
    """
    scale_w, scale_h = target_size[0] / image_size[0], target_size[1] / image_size[1]
    if resize_mode == "Resize and Fill":  # fit inside: the smaller scale, on the long side
        estimate = min(scale_w, scale_h) * max(image_size)
    else:  # cover the target: the larger scale, on the short side
        estimate = max(scale_w, scale_h) * min(image_size)
    return max(64, round(estimate))


def fit_map(control_map: Image.Image, width: int, height: int, resize_mode: str) -> Image.Image:
    """The RGB map at ``width`` x ``height``: stretched, cropped to cover, or fitted inside with
    black bands ("Resize and Fill"; black is "no control" for edge and line maps)."""
    control_map = control_map.convert("RGB")
    if resize_mode == "Just Resize" or control_map.size == (width, height):
        return control_map.resize((width, height), Image.Resampling.LANCZOS)
    cover = resize_mode == "Crop and Resize"
    scales = (width / control_map.width, height / control_map.height)
    scale = max(scales) if cover else min(scales)
    size = (max(1, round(control_map.width * scale)), max(1, round(control_map.height * scale)))
    resized = control_map.resize(size, Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(resized, ((width - size[0]) // 2, (height - size[1]) // 2))
    return canvas


def control_hint(control_map: Image.Image, rows: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The map as ControlNet's ``controlnet_cond``: (rows, 3, H, W), values in [0, 1]."""
    pixels = torch.from_numpy(np.asarray(control_map.convert("RGB"), dtype=np.float32) / 255.0)
    return pixels.permute(2, 0, 1).unsqueeze(0).expand(rows, -1, -1, -1).to(device=device, dtype=dtype)


def unit_step_active(unit: Mapping[str, Any], step: int, total_steps: int) -> bool:
    """Whether the unit acts at 0-based ``step`` of ``total_steps``: the sampling progress
    ``step / total_steps`` lies in [guidance_start, guidance_end]."""
    progress = step / max(1, total_steps)
    return unit["guidance_start"] <= progress <= unit["guidance_end"]


def control_scales(outputs: int, weight: float, control_mode: str) -> list[float]:
    """The multiplier of each residual (down blocks in order, then the middle block)."""
    if control_mode == CONTROL_MODES[0]:
        return [weight] * outputs
    return [weight * SOFT_INJECTION_BASE ** (outputs - 1 - i) for i in range(outputs)]


def unit_residuals(controlnet: Any, call: UNetCall, hint: torch.Tensor, unit: Mapping[str, Any]) -> UNetResiduals:
    """One unit's residuals for this UNet call: ``controlnet`` (a diffusers ``ControlNetModel``)
    on the call's rows and the (1, 3, H, W) ``hint``, scaled by weight and control mode."""
    rows = call.sample.shape[0]
    # With "ControlNet is more important" the unconditional copy (the first) gets no control.
    start = rows // call.copies if call.uses_cfg and unit["control_mode"] == CONTROL_MODES[2] else 0
    extra = {key: value[start:] for key, value in (call.added_cond_kwargs or {}).items()}
    down, mid = controlnet(call.sample[start:], call.timestep,
                           encoder_hidden_states=call.encoder_hidden_states[start:],
                           controlnet_cond=hint.expand(rows - start, -1, -1, -1), conditioning_scale=1.0,
                           added_cond_kwargs=extra or None, return_dict=False)
    scales = control_scales(len(down) + 1, unit["weight"], unit["control_mode"])
    outputs = [tensor * scale for tensor, scale in zip([*down, mid], scales, strict=True)]
    if start:
        outputs = [torch.cat([torch.zeros_like(tensor[:start]), tensor]) for tensor in outputs]
    return UNetResiduals(tuple(outputs[:-1]), outputs[-1])


def unit_infotext(unit: Mapping[str, Any], model_label: str) -> str:
    """A1111's ``ControlNet N`` value: ``Module: canny, Model: name [hash], Weight: 1, ...``
    (``model_label`` is the model with its short hash; the unit holds the resolved resolution
    and thresholds)."""
    values = {**unit, "model": model_label}
    return ", ".join(f"{key}: {_infotext_value(values[field])}" for key, field in _INFOTEXT_KEYS.items())


def _infotext_value(value: Any) -> str:
    text = format_value(value)
    return json.dumps(text) if "," in text or ":" in text else text


def parse_unit_infotext(text: str) -> dict[str, Any]:
    """A ``ControlNet N`` infotext value back into unit fields (an enabled unit).

    Raises:
        ValueError: not a ``Key: value, ...`` list.
    """
    fields: dict[str, Any] = {"enabled": True}
    for match in re.finditer(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)', text):
        key, raw = match.group(1).strip(), match.group(2).strip()
        raw = json.loads(raw) if raw.startswith('"') else raw
        if key in _INFOTEXT_KEYS:
            fields[_INFOTEXT_KEYS[key]] = _typed(_INFOTEXT_KEYS[key], raw)
    if len(fields) == 1:
        raise ValueError(f"not a ControlNet unit: {text!r}")
    return normalize_unit(fields)


def _typed(field: str, raw: str) -> Any:
    default = UNIT_DEFAULTS[field]
    if isinstance(default, bool):
        return raw.lower() == "true"
    if isinstance(default, int):
        return int(float(raw))
    if isinstance(default, float):
        return float(raw)
    return raw
