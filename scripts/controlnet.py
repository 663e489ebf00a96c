"""ControlNet (Zhang et al. 2023, "Adding Conditional Control to Text-to-Image Diffusion
Models"), as an always-on script on the public script API: the proof that the per-step
hooks are enough for it. Nothing here patches the UNet; each step the script returns the
units' skip-connection residuals from ``unet_residuals`` and the engine adds them.

Each unit (``unit_0`` ... up to the "control_net_unit_count" setting) takes the fields of
sd-webui-controlnet's API (see ``modules.processing.controlnet_units``), so A1111 clients send
``alwayson_scripts: {"ControlNet": {"args": [unit, ...]}}`` unchanged. Per job the script
preprocesses each enabled unit's image once (``process``), writes ``ControlNet N`` into the
infotext, and per UNet call runs the unit's ControlNet when the step lies in
[guidance_start, guidance_end]; several units add up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from modules.extensions.api import (
    AlwaysVisible,
    ArgSpec,
    Checkbox,
    Dropdown,
    Group,
    ImageArg,
    Img2ImgRequest,
    Number,
    Processed,
    Script,
    Slider,
    StepParams,
    UNetCall,
    UNetResiduals,
    append_image,
    register_callback,
)
from modules.processing.control_preprocess import PREPROCESSORS
from modules.processing.controlnet_units import (
    CONTROL_MODES,
    RESIZE_MODES,
    control_hint,
    fit_map,
    normalize_unit,
    parse_unit_infotext,
    pixel_perfect_resolution,
    unit_infotext,
    unit_residuals,
    unit_step_active,
)

UNIT_COUNT_SETTING = "control_net_unit_count"
NO_DETECTMAP_SETTING = "control_net_no_detectmap"


def _settings() -> dict[str, ArgSpec]:
    return {UNIT_COUNT_SETTING: Slider("Multi-ControlNet: number of ControlNet units (needs a restart)", 1, 10, 3),
            NO_DETECTMAP_SETTING: Checkbox("Do not append detectmap to output")}


register_callback("on_ui_settings", _settings)


@dataclass
class PreparedUnit:
    """An enabled unit of this job: its index, fields (resolution and thresholds resolved) and map."""

    index: int
    unit: dict[str, Any]
    control_map: Image.Image


class ControlNet(Script):
    def title(self) -> str:
        return "ControlNet"

    def show(self, is_img2img: bool) -> object:
        return AlwaysVisible

    def unit_count(self) -> int:
        return int(self.option(UNIT_COUNT_SETTING, 3))

    def ui(self, is_img2img: bool) -> dict[str, ArgSpec]:
        library = self.resources.controlnets
        fields = {
            "enabled": Checkbox("Enable"),
            "image": ImageArg("Control image (empty: the img2img input)" if is_img2img else "Control image"),
            "module": Dropdown("Preprocessor", tuple(PREPROCESSORS), "none"),
            "model": Dropdown("Model", ("None", *(library.names() if library else ())), "None"),
            "weight": Slider("Control Weight", 0.0, 2.0, 1.0, step=0.05),
            "guidance_start": Slider("Starting Control Step", 0.0, 1.0, 0.0, step=0.01),
            "guidance_end": Slider("Ending Control Step", 0.0, 1.0, 1.0, step=0.01),
            "control_mode": Dropdown("Control Mode", CONTROL_MODES),
            "resize_mode": Dropdown("Resize Mode", RESIZE_MODES, "Crop and Resize"),
            "pixel_perfect": Checkbox("Pixel Perfect"),
            "processor_res": Number("Preprocessor Resolution (-1: the preprocessor's default)", -1, -1, 2048,
                                    integer=True),
            "threshold_a": Number("Threshold A (-1: default)", -1.0),
            "threshold_b": Number("Threshold B (-1: default)", -1.0),
        }
        return {f"unit_{i}": Group(f"ControlNet Unit {i}", fields, normalize=self._checked(is_img2img),
                                   parse_text=parse_unit_infotext, preview=self._preview)
                for i in range(self.unit_count())}

    def _checked(self, is_img2img: bool) -> Any:
        """The unit normalizer, plus the checks that make a bad unit a 4xx rather than a silent no-op."""

        def check(value: Any) -> dict[str, Any]:
            unit = normalize_unit(value)
            if unit.get("enabled") is not True:
                return unit
            if unit.get("model", "None") == "None":
                raise ValueError("choose a ControlNet model (the 'model' field)")
            if unit.get("image") in (None, "") and not is_img2img:
                raise ValueError("needs a control image in 'image' (only img2img can use its input image)")
            preprocessors = self.resources.preprocessors
            if preprocessors is not None and unit.get("module") in PREPROCESSORS:
                problem = preprocessors.problem(unit["module"])
                if problem:
                    raise ValueError(problem)
            return unit

        return check

    def _resolved(self, unit: Mapping[str, Any], image: Image.Image, target: tuple[int, int]) -> dict[str, Any]:
        """The unit with its resolution (pixel-perfect or the preprocessor default) and thresholds filled in."""
        info = PREPROCESSORS[unit["module"]]
        if unit["pixel_perfect"] and info.resolution_default > 0:
            resolution = pixel_perfect_resolution(image.size, target, unit["resize_mode"])
        else:
            resolution = unit["processor_res"] if unit["processor_res"] > 0 else info.resolution_default
        thresholds = {}
        for name, slider in (("threshold_a", info.threshold_a), ("threshold_b", info.threshold_b)):
            thresholds[name] = unit[name] if unit[name] != -1 or slider is None else slider.default
        return {**unit, "processor_res": resolution, **thresholds}

    def _map(self, unit: Mapping[str, Any], seed: int = 0) -> Image.Image:
        preprocessors = self.resources.preprocessors
        if preprocessors is None:
            raise RuntimeError("no ControlNet preprocessors in this studio")
        threshold = {name: unit[name] if unit[name] != -1 else None for name in ("threshold_a", "threshold_b")}
        return preprocessors.run(unit["module"], unit["image"], max(64, unit["processor_res"]), seed=seed,
                                 **threshold)

    def _preview(self, unit: Mapping[str, Any]) -> Image.Image:
        """The web UI's Preview: the unit's image through its preprocessor."""
        if unit.get("image") is None:
            raise ValueError("Upload a control image first.")
        image = unit["image"]
        return self._map(self._resolved(unit, image, image.size))

    def process(self, p: Any, **units: dict[str, Any]) -> None:
        self._prepared: list[PreparedUnit] = []
        self._models: dict[str, Any] = {}
        self._hints: dict[tuple[int, int, int], torch.Tensor] = {}
        for index, unit in enumerate(units.values()):
            if not unit["enabled"]:
                continue
            image = unit["image"]
            if image is None and isinstance(p, Img2ImgRequest) and p.init_images:
                image = p.init_images[0].convert("RGB")
            if image is None:
                raise ValueError(f"ControlNet unit {index} has no control image")
            resolved = self._resolved({**unit, "image": image}, image, (p.width, p.height))
            self._prepared.append(PreparedUnit(index, resolved, self._map(resolved, int(p.seed))))

    def infotext(self, p: Any, **units: dict[str, Any]) -> dict[str, str]:
        library = self.resources.controlnets
        found = {}
        for prepared in self._prepared:
            model = prepared.unit["model"]
            label = f"{model} [{library.short_hash(model)}]" if library is not None else model
            found[f"ControlNet {prepared.index}"] = unit_infotext(prepared.unit, label)
        return found

    def postprocess(self, p: Any, processed: Processed, **units: dict[str, Any]) -> None:
        """Each unit's preprocessed map after the images (not saved), as sd-webui-controlnet shows
        them unless "Do not append detectmap to output" is set; a "none" unit's map is its own image."""
        if self.option(NO_DETECTMAP_SETTING, False):
            return
        for prepared in getattr(self, "_prepared", []):  # none when process() failed
            if prepared.unit["module"] != "none":
                append_image(processed, prepared.control_map)

    def paste_fields(self) -> dict[str, str]:
        return {f"ControlNet {i}": f"unit_{i}" for i in range(self.unit_count())}

    def unet_residuals(self, p: Any, step: StepParams, call: UNetCall, **units: dict[str, Any],
                       ) -> UNetResiduals | None:
        total = None
        for prepared in self._prepared:
            if not unit_step_active(prepared.unit, step.step, step.total_steps):
                continue
            residuals = unit_residuals(self._model(prepared.unit["model"], call), call,
                                       self._hint(prepared, call), prepared.unit)
            total = residuals if total is None else total + residuals
        return total

    def _model(self, name: str, call: UNetCall) -> Any:
        """The unit's ControlNet on the UNet's device and dtype, loaded once per job."""
        if name not in self._models:
            library = self.resources.controlnets
            if library is None:
                raise RuntimeError("no ControlNet library in this studio")
            pooled = (call.added_cond_kwargs or {}).get("text_embeds")
            self._models[name] = library.load(name, call.sample.device, call.sample.dtype,
                                              context_width=call.encoder_hidden_states.shape[-1],
                                              pooled_width=None if pooled is None else pooled.shape[-1])
        return self._models[name]

    def _hint(self, prepared: PreparedUnit, call: UNetCall) -> torch.Tensor:
        """The map fitted to this call's image size (hires fix's second pass is larger), as (1, 3, H, W)."""
        height, width = call.sample.shape[-2] * 8, call.sample.shape[-1] * 8  # the VAE downsamples by 8
        key = (prepared.index, width, height)
        if key not in self._hints:
            fitted = fit_map(prepared.control_map, width, height, prepared.unit["resize_mode"])
            self._hints[key] = control_hint(fitted, 1, call.sample.device, call.sample.dtype)
        return self._hints[key]
