"""sd-webui-controlnet's routes, at the app root as that extension serves them:
``GET /controlnet/version``, ``/model_list``, ``/module_list``, ``/control_types``, ``/settings``
and ``POST /controlnet/detect`` (run preprocessors on images without generating).

``module_list`` names the preprocessors as sd-webui-controlnet does: by its internal names
(``hed``, ``depth``, ``lineart`` ...), or with ``alias_names=true`` by the names its UI shows
(``softedge_hed``, ``depth_midas``, ``invert (from white bg & black line)`` ...); a unit's
``module`` may be any of them.

Generation itself goes through ``alwayson_scripts: {"ControlNet": {"args": [unit, ...]}}`` on
txt2img/img2img; these routes only list and preprocess.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body, HTTPException

from modules.models.files import ModelFileError
from modules.processing.control.control_preprocess import (
    PREPROCESSORS,
    RESOLUTION_RANGE,
    UnknownPreprocessorError,
    canonical_module,
)
from modules.processing.control.control_types import control_types as control_type_listing
from modules.processing.editing.image_ops import flatten
from modules.processing.errors import RequestValidationError
from modules.processing.intake.image_input import PixelBudget, png_base64

if TYPE_CHECKING:
    from modules.models.controlnet import ControlNetLibrary
    from modules.studio import Studio

__all__ = ["CONTROLNET_API_VERSION", "add_controlnet_routes"]

#: What ``/controlnet/version`` answers; clients of sd-webui-controlnet check it is at least 2.
CONTROLNET_API_VERSION = 2
#: Preprocessing is CPU-heavy: at most this many detect requests run at once, the rest get 429.
MAX_CONCURRENT_DETECT = 2


def _module_detail(alias_names: bool) -> dict[str, Any]:
    """Per preprocessor (keyed as ``module_list`` names it): whether it needs no weights, and its
    resolution/threshold sliders."""
    detail = {}
    for info in PREPROCESSORS.values():
        sliders: list[dict[str, Any]] = []
        if info.resolution_default > 0:
            sliders.append({"name": "Preprocessor Resolution", "value": info.resolution_default,
                            "min": RESOLUTION_RANGE[0], "max": RESOLUTION_RANGE[1], "step": 8})
        for slider in (info.threshold_a, info.threshold_b):
            if slider is not None:
                sliders.append({"name": slider.label, "value": slider.default, "min": slider.minimum,
                                "max": slider.maximum, "step": slider.step})
        detail[info.alias if alias_names else info.key] = {"model_free": not info.needs, "sliders": sliders}
    return detail


def _model_titles(library: ControlNetLibrary | None, rescan: bool = False) -> list[str]:
    """The installed ControlNets as ``name [hash]``."""
    if library is None:
        return []
    names = library.refresh() if rescan else library.names()
    return [f"{name} [{library.short_hash(name)}]" for name in names]


def add_controlnet_routes(router: APIRouter, studio: Studio, decode: Callable[[Any, str], Any]) -> None:
    """Add the routes to ``router`` (served at the app root, behind the API's auth)."""
    detecting = threading.BoundedSemaphore(MAX_CONCURRENT_DETECT)

    @router.get("/controlnet/version")
    def version() -> dict[str, int]:
        return {"version": CONTROLNET_API_VERSION}

    @router.get("/controlnet/model_list")
    def model_list(update: bool = False) -> dict[str, list[str]]:
        return {"model_list": _model_titles(studio.context.controlnets, rescan=update)}

    @router.get("/controlnet/module_list")
    def module_list(alias_names: bool = False) -> dict[str, Any]:
        names = [info.alias if alias_names else info.key for info in PREPROCESSORS.values()]
        return {"module_list": names, "module_detail": _module_detail(alias_names)}

    @router.get("/controlnet/control_types")
    def control_types() -> dict[str, Any]:
        """Per control type its preprocessors (UI names) and models, as clients read them at start-up."""
        modules = {info.alias: (info.name, info.key) for info in PREPROCESSORS.values()}
        return {"control_types": control_type_listing(modules, _model_titles(studio.context.controlnets))}

    @router.get("/controlnet/settings")
    def settings() -> dict[str, Any]:
        return {"control_net_unit_count": int(studio.extension_setting_values().get("control_net_unit_count", 3))}

    @router.post("/controlnet/detect")
    def detect(body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        module, images, options = _detect_request(body, decode)
        preprocessors = studio.context.preprocessors
        if preprocessors is None:
            raise HTTPException(503, "no preprocessors in this studio")
        if not detecting.acquire(blocking=False):
            raise HTTPException(429, "busy preprocessing other images; try again", headers={"Retry-After": "2"})
        try:
            maps = [preprocessors.run(module, image, **options) for image in images]
        except ModelFileError as error:
            raise HTTPException(422, f"controlnet_module: {error.detail}") from None
        except (FileNotFoundError, PermissionError) as error:  # their text holds the server's path
            raise HTTPException(422, f"controlnet_module: an annotator file could not be read ({error.strerror})",
                                ) from None
        except ValueError as error:  # "processor_res: ..." / "threshold_a: ...": the detect body's names
            message = str(error)
            named = message.startswith(("processor_res", "threshold_"))
            raise HTTPException(422, f"controlnet_{message}" if named else message) from None
        finally:
            detecting.release()
        return {"images": [png_base64(image, "") for image in maps], "info": "Success"}


def _detect_request(body: dict[str, Any], decode: Callable[[Any, str], Any]) -> tuple[str, list[Any], dict[str, Any]]:
    """The module, the decoded images and the preprocessor options of a detect body (422 naming the field)."""
    module = body.get("controlnet_module", "none")
    if not isinstance(module, str) or canonical_module(module) not in PREPROCESSORS:
        raise HTTPException(422, f"controlnet_module: {UnknownPreprocessorError(str(module))}")
    module = canonical_module(module)
    images = body.get("controlnet_input_images")
    if not isinstance(images, list) or not images:
        raise HTTPException(422, "controlnet_input_images: must be a non-empty list of base64 images")
    # Size checked from the header before decoding; transparency laid on white, CMYK/16-bit made RGB.
    budget = PixelBudget()
    decoded = []
    for k, image in enumerate(images):
        try:
            decoded.append(flatten(budget.take(decode(image, f"controlnet_input_images.{k}"),
                                               f"controlnet_input_images.{k}")))
        except RequestValidationError as error:
            raise HTTPException(422, str(error)) from None
    info = PREPROCESSORS[module]
    options: dict[str, Any] = {"resolution": info.resolution_default if info.resolution_default > 0 else 512}
    for field, key in (("controlnet_processor_res", "resolution"), ("controlnet_threshold_a", "threshold_a"),
                       ("controlnet_threshold_b", "threshold_b")):
        value = body.get(field, -1)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise HTTPException(422, f"{field}: expected a number, got {value!r}")
        if value != -1:
            options[key] = int(value) if key == "resolution" else float(value)
    return module, decoded, options
