"""ControlNet (Zhang et al. 2023, "Adding Conditional Control to Text-to-Image Diffusion
Models"), as an always-on script on the public script API: the proof that the per-step
hooks are enough for it. Nothing here patches the UNet; each step the script returns the
units' skip-connection residuals from ``unet_residuals`` and the engine adds them.

Each unit (``unit_0`` ... up to the "control_net_unit_count" setting) takes the fields of
sd-webui-controlnet's API (see ``modules.processing.control.controlnet_units``), so A1111 clients send
``alwayson_scripts: {"ControlNet": {"args": [unit, ...]}}`` unchanged. Per job the script
preprocesses each enabled unit's image once (``process``), writes ``ControlNet N`` into the
infotext, and per UNet call runs the unit's ControlNet when the step lies in
[guidance_start, guidance_end]; several units add up.

Nothing fails silently. As sd-webui-controlnet, out-of-range numbers are put back in range and
fields this version does not read are ignored; a unit that cannot run (no such model or
preprocessor, no image, missing annotator files) is switched off. Each of these is a notice in
the result, and only units that ran are in the infotext. A ControlNet made for another model
family than the job's checkpoint is refused when the request is submitted (``check``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
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
    JobModel,
    Number,
    Processed,
    Script,
    ScriptCheckError,
    Slider,
    StepParams,
    UNetCall,
    UNetResiduals,
    append_image,
    register_callback,
)
from modules.paths import DataPaths
from modules.processing.control.control_preprocess import PREPROCESSORS, UnknownPreprocessorError
from modules.processing.control.controlnet_units import (
    CONTROL_MODES,
    RESIZE_MODES,
    clamp_unit,
    control_hint,
    fit_map,
    ignored_fields,
    normalize_unit,
    parse_unit_infotext,
    pixel_perfect_resolution,
    unit_infotext,
    unit_residuals,
    unit_step_active,
)

logger = logging.getLogger(__name__)

UNIT_COUNT_SETTING = "control_net_unit_count"
NO_DETECTMAP_SETTING = "control_net_no_detectmap"


def _settings() -> dict[str, ArgSpec]:
    return {UNIT_COUNT_SETTING: Slider("Multi-ControlNet: number of ControlNet units (needs a restart)", 1, 10, 3),
            NO_DETECTMAP_SETTING: Checkbox("Do not append detectmap to output")}


register_callback("on_ui_settings", _settings)


#: Where ControlNet models go, relative to the data folder: the paths module's name for it, not
#: the server's absolute path (the message is also shown on shared servers).
MODEL_FOLDER = DataPaths(Path()).controlnet.as_posix()
NO_MODEL_MESSAGE = ("No ControlNet model installed: put ControlNet models (.safetensors files, or diffusers "
                    f"folders) into {MODEL_FOLDER} in the data folder (--data-dir), or a folder given with "
                    "--controlnet-dir, then restart the web UI.")


def _model_dropdown(names: list[str]) -> ArgSpec:
    """The unit's Model choice; with no model installed it says so and where they go, instead of
    offering an empty list."""
    return Dropdown("Model", ("None", *names), "None", info="" if names else NO_MODEL_MESSAGE)


def _reason(error: Exception) -> str:
    """An error in words for the result's notices: a model file's error without its path."""
    return str(getattr(error, "detail", None) or error)


@dataclass
class PreparedUnit:
    """An enabled unit of this job: its index, fields (resolution and thresholds resolved) and map."""

    index: int
    unit: dict[str, Any]
    control_map: Image.Image


class ControlNet(Script):
    def __init__(self) -> None:
        # What reading each unit of the request noted (by unit index), and what the job noted; both
        # go to the result's notices. Per instance, and each job has its own instance.
        self._unit_notices: dict[int, list[str]] = {}
        self._job_notices: list[str] = []
        self._prepared: list[PreparedUnit] = []

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
            "model": _model_dropdown(library.names() if library else []),
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
            "save_detected_map": Checkbox("Show the detected map with the images", True),
        }
        return {f"unit_{i}": Group(f"ControlNet Unit {i}", fields, normalize=self._reader(i, is_img2img),
                                   parse_text=parse_unit_infotext, preview=self._preview)
                for i in range(self.unit_count())}

    def _reader(self, index: int, is_img2img: bool) -> Callable[[Any], dict[str, Any]]:
        """Unit ``index`` as a client sent it -> the unit the job runs, noting what it changed.

        Raises ValueError (a 422) only for what no reading can fix: not an object, an unknown mode,
        a step range that ends before it starts. Wrong types are refused by the field checks after.
        """

        def read(value: Any) -> dict[str, Any]:
            unit = normalize_unit(value)
            self._unit_notices.pop(index, None)
            if unit.get("enabled") is not True:  # off: made valid quietly, it does not run
                return self._runnable(clamp_unit(unit, PREPROCESSORS.get(unit.get("module", "none")))[0])
            ignored = ignored_fields(value)
            notices = [f"ignored the fields it does not use here: {', '.join(ignored)}"] if ignored else []
            unit, clamped = clamp_unit(unit, PREPROCESSORS.get(unit.get("module", "none")))
            notices = [f"ControlNet unit {index}: {notice}" for notice in [*notices, *clamped]]
            start, end = unit.get("guidance_start", 0.0), unit.get("guidance_end", 1.0)
            if isinstance(start, float) and isinstance(end, float) and start > end:
                raise ValueError(f"guidance_start {start} is after guidance_end {end}")
            problem = self._problem(unit, is_img2img)
            if problem is not None:
                notices.append(f"ControlNet unit {index} not applied: {problem}")
                unit = {**self._runnable(unit), "enabled": False}
            self._unit_notices[index] = notices
            for notice in notices:
                logger.info("%s", notice)
            return unit

        return read

    def _runnable(self, unit: dict[str, Any]) -> dict[str, Any]:
        """The unit with a model and a preprocessor that exist ("None"/"none" in place of others)."""
        library = self.resources.controlnets
        if isinstance(unit.get("model"), str) and unit["model"] not in (library.names() if library else ()):
            unit = {**unit, "model": "None"}
        if isinstance(unit.get("module"), str) and unit["module"] not in PREPROCESSORS:
            unit = {**unit, "module": "none"}
        return unit

    def _problem(self, unit: Mapping[str, Any], is_img2img: bool) -> str | None:
        """Why an enabled unit cannot run, or None."""
        library = self.resources.controlnets
        model, module = unit.get("model", "None"), unit.get("module", "none")
        if isinstance(module, str) and module not in PREPROCESSORS:
            return str(UnknownPreprocessorError(module))
        if model == "None":
            return "no ControlNet model chosen (the 'model' field)"
        names = library.names() if library is not None else []
        if isinstance(model, str) and model not in names:
            return (f"no ControlNet model {model!r} in {MODEL_FOLDER}; available: {', '.join(names) or 'none'} "
                    "(GET /controlnet/model_list?update=true rescans the folder)")
        if unit.get("image") in (None, "") and not is_img2img:
            return "no control image in 'image' (only img2img can use its input image)"
        preprocessors = self.resources.preprocessors
        problem = preprocessors.problem(module) if preprocessors is not None and isinstance(module, str) else None
        return problem or (library.problem(model) if library is not None and isinstance(model, str) else None)

    def check(self, p: Any, model: JobModel | None, **units: dict[str, Any]) -> None:
        """Refuse, before the job is queued, a unit on a checkpoint whose family takes no ControlNet
        (FLUX.1), or whose ControlNet is for another model family than the checkpoint the job will
        use (its weights would not fit the UNet)."""
        library = self.resources.controlnets
        if model is None or library is None:
            return
        for index, unit in enumerate(units.values()):
            if unit["enabled"] and not model.family.capabilities.controlnet:
                raise ScriptCheckError(
                    f"{model.family.label} ({model.checkpoint!r}) takes no ControlNet here yet: turn the unit "
                    "off, or use an SD1.x, SD2.x or SDXL checkpoint", argument=f"args[{index}].enabled")
            made_for = library.mismatch(unit["model"], model.family) if unit["enabled"] else None
            if made_for is not None:
                raise ScriptCheckError(
                    f"the ControlNet {unit['model']!r} is made for {made_for}, but the checkpoint "
                    f"{model.checkpoint!r} is {model.family.label}: choose a ControlNet made for "
                    f"{model.family.label}, or a {made_for} checkpoint", argument=f"args[{index}].model")

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
        self._prepared = []
        self._job_notices = []
        self._models: dict[str, Any] = {}
        self._hints: dict[tuple[int, int, int], torch.Tensor] = {}
        for index, unit in enumerate(units.values()):
            if not unit["enabled"]:
                continue
            image = unit["image"]
            if image is None and isinstance(p, Img2ImgRequest) and p.init_images:
                image = p.init_images[0].convert("RGB")
            if image is None:
                self._not_applied(index, "no control image")
                continue
            resolved = self._resolved({**unit, "image": image}, image, (p.width, p.height))
            try:
                control_map = self._map(resolved, int(p.seed))
            except Exception as error:  # an annotator file that will not load, ...: this unit only
                logger.exception("ControlNet unit %d: preprocessor %s failed", index, unit["module"])
                self._not_applied(index, f"preprocessor {unit['module']} failed: {_reason(error)}")
                continue
            self._prepared.append(PreparedUnit(index, resolved, control_map))

    def _not_applied(self, index: int, why: str) -> None:
        self._job_notices.append(f"ControlNet unit {index} not applied: {why}")
        logger.warning("%s", self._job_notices[-1])

    def infotext(self, p: Any, **units: dict[str, Any]) -> dict[str, str]:
        """``ControlNet N`` for each unit that runs (others are notices)."""
        library = self.resources.controlnets
        found = {}
        for prepared in self._prepared:
            model = prepared.unit["model"]
            label = f"{model} [{library.short_hash(model)}]" if library is not None else model
            found[f"ControlNet {prepared.index}"] = unit_infotext(prepared.unit, label)
        return found

    def postprocess(self, p: Any, processed: Processed, **units: dict[str, Any]) -> None:
        """The notices, then each unit's preprocessed map after the images (not saved), as
        sd-webui-controlnet shows them when the unit's ``save_detected_map`` is on (its default)
        and "Do not append detectmap to output" is off; a "none" unit's map is its own image."""
        for index in sorted(self._unit_notices):
            processed.notices.extend(self._unit_notices[index])
        self._unit_notices.clear()  # once per job, however many generations a selected script makes
        processed.notices.extend(self._job_notices)
        if self.option(NO_DETECTMAP_SETTING, False):
            return
        for prepared in self._prepared:
            if prepared.unit["module"] != "none" and prepared.unit["save_detected_map"]:
                append_image(processed, prepared.control_map)

    def paste_fields(self) -> dict[str, str]:
        return {f"ControlNet {i}": f"unit_{i}" for i in range(self.unit_count())}

    def unet_residuals(self, p: Any, step: StepParams, call: UNetCall, **units: dict[str, Any],
                       ) -> UNetResiduals | None:
        total = None
        for prepared in list(self._prepared):
            if not unit_step_active(prepared.unit, step.step, step.total_steps):
                continue
            try:
                model = self._model(prepared.unit["model"], call)
            except Exception as error:  # a broken file, or a family known only now (a pickled checkpoint)
                logger.exception("ControlNet unit %d: model %s failed to load", prepared.index, prepared.unit["model"])
                self._prepared.remove(prepared)  # the other units go on
                self._not_applied(prepared.index, f"its model {prepared.unit['model']} could not be used: "
                                  f"{_reason(error)}")
                continue
            residuals = unit_residuals(model, call, self._hint(prepared, call), prepared.unit)
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
