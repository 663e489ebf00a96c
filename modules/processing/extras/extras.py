"""Extras: upscale finished images (A1111's Extras tab, ``/sdapi/v1/extra-single-image`` and
``/sdapi/v1/extra-batch-images``).

"Scale by" multiplies the size; "Scale to" makes an exact size, cropping the upscaled image to
fit or stretching it. Upscaler 2, when chosen with a visibility above 0, upscales the same
source and is blended over the first result. As in A1111, "Upscaler 1: None" means no
upscaling at all (Upscaler 2 alone does nothing). The source's infotext is kept and A1111's
``Postprocess …`` keys are appended, so PNG Info still shows how the picture was made.
Face restoration (GFPGAN, CodeFormer) is not installed: its fields are accepted only when 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from modules.models.upscalers import BUILTIN_UPSCALERS, UnknownUpscalerError, Upscaler, UpscalerLibrary
from modules.processing.errors import RequestValidationError
from modules.processing.extras.upscaling import blend_upscalers, cover_scale, upscale_by, upscale_to
from modules.processing.intake.image_input import MAX_INPUT_PIXELS, PixelBudget, check_input_pixels
from modules.processing.intake.json_values import check_json_values
from modules.processing.output.image_formats import embedded_infotext
from modules.processing.output.infotext import build_infotext, parse_infotext
from modules.processing.output.saving import save_image
from modules.processing.requests import check_float, check_int

if TYPE_CHECKING:  # txt2img pulls in the whole generation engine; only the type is needed here
    from modules.processing.generation.txt2img import OutputOptions

__all__ = ["EXTRAS_API_FIELDS", "MAX_UPSCALED_PIXELS", "ExtrasRequest", "ExtrasResult", "check_extras_sizes",
           "extras_infotext", "extras_parameters", "extras_request_from_api", "run_extras"]

#: The most pixels an Extras job may make (width x height, the intermediate "cover" size of "Scale
#: to" included; a batch's results together): the largest input at 2x, or "Scale to" 8192x8192.
#: 8192x8192 RGB is 200 MB, and the upscaler's float tiles of it several times that.
MAX_UPSCALED_PIXELS = 4 * MAX_INPUT_PIXELS

# Face restoration needs a face detector besides GFPGAN/CodeFormer weights, and none is
# installed, so these fields turn into a notice when they are on. ``codeformer_weight`` does
# nothing while CodeFormer is off, and A1111 clients send its 0.5 default: only its range is checked.
_FACE_FIELDS = ("gfpgan_visibility", "codeformer_visibility")
# Payload keys the API layer reads itself (the pictures, and whether to send them back).
_HANDLED_ELSEWHERE = frozenset({"image", "imageList", "show_extras_results"})
_UNSAFE_NAME_CHARS = re.compile(r"[^\w.-]+")


@dataclass(frozen=True)
class ExtrasRequest:
    """The Upscale postprocessing settings, under A1111's API names; checked when built.

    Upscaler names are checked separately (``check_upscalers``) since they depend on the
    files installed.
    """

    resize_mode: int = 0
    """0: "Scale by" ``upscaling_resize``; 1: "Scale to" ``upscaling_resize_w`` x ``_h``."""
    upscaling_resize: float = 2.0
    """Factor for "Scale by", 1 to 8."""
    upscaling_resize_w: int = 512
    """Target width for "Scale to", 64 to 8192 px."""
    upscaling_resize_h: int = 512
    """Target height for "Scale to", 64 to 8192 px."""
    upscaling_crop: bool = True
    """"Crop to fit" for "Scale to": cover the target and cut the centre; off: stretch."""
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = 0.0
    """Weight of Upscaler 2's result in the blend, 0 to 1."""
    upscale_first: bool = False
    """A1111 runs face restoration before upscaling when set; with no face restoration it
    changes nothing, and is accepted so A1111 clients work."""
    gfpgan_visibility: float = 0.0
    codeformer_visibility: float = 0.0
    codeformer_weight: float = 0.0

    def __post_init__(self) -> None:
        check_int("resize_mode", self.resize_mode, 0, 1)
        check_float("upscaling_resize", self.upscaling_resize, 1.0, 8.0)
        check_int("upscaling_resize_w", self.upscaling_resize_w, 64, 8192)
        check_int("upscaling_resize_h", self.upscaling_resize_h, 64, 8192)
        check_float("extras_upscaler_2_visibility", self.extras_upscaler_2_visibility, 0.0, 1.0)
        for flag in ("upscaling_crop", "upscale_first"):
            if not isinstance(getattr(self, flag), bool):
                raise RequestValidationError(flag, f"must be true or false, got {getattr(self, flag)!r}")
        for name in ("upscaler_1", "upscaler_2"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise RequestValidationError(name, f"must name an upscaler, got {getattr(self, name)!r}")
        check_float("codeformer_weight", self.codeformer_weight, 0.0, 1.0)
        for name in _FACE_FIELDS:
            check_float(name, getattr(self, name), 0.0, 1.0)

    def notices(self) -> list[str]:
        """What the request asks for that is not installed here (the job runs without it)."""
        return [f"{name}: face restoration (GFPGAN/CodeFormer) is not installed here; the images are not "
                "face-restored" for name in _FACE_FIELDS if getattr(self, name) != 0]

    @property
    def uses_upscaler_1(self) -> bool:
        """Upscaler 1 "None" turns the Upscale step off (A1111)."""
        return self.upscaler_1 != "None"

    @property
    def uses_upscaler_2(self) -> bool:
        """Upscaler 2 runs only beside Upscaler 1, and only when it is visible (as in A1111)."""
        return self.uses_upscaler_1 and self.upscaler_2 != "None" and self.extras_upscaler_2_visibility > 0

    def check_upscalers(self, names: Sequence[str]) -> None:
        """Raise ``RequestValidationError`` naming the field if an upscaler is not in ``names``."""
        for field_name in ("upscaler_1", "upscaler_2"):
            value = getattr(self, field_name)
            if value not in names and value not in BUILTIN_UPSCALERS:
                raise RequestValidationError(field_name, f"unknown upscaler {value!r}; choose one of: "
                                             f"{', '.join(names)}")


@dataclass(frozen=True)
class ExtrasResult:
    """One processed picture: the source's ``name``, the new ``image``, its ``infotext``, and
    the file it was saved to (None: not saved)."""

    name: str
    image: Image.Image
    infotext: str
    path: Path | None


_REQUEST_FIELDS = frozenset(f.name for f in fields(ExtrasRequest))
#: Every field of A1111's extras endpoints this reader knows; others are ignored (and reported).
EXTRAS_API_FIELDS: frozenset[str] = _REQUEST_FIELDS | _HANDLED_ELSEWHERE


def extras_request_from_api(payload: Mapping[str, Any], upscaler_names: Sequence[str]) -> ExtrasRequest:
    """An ``ExtrasRequest`` from an A1111 extras payload; ``null`` means the default.

    ``image``, ``imageList`` and ``show_extras_results`` are skipped (the API layer reads them).
    Whole-number floats are accepted for the integer fields, as JSON clients often send them.

    Fields it does not know are skipped (``EXTRAS_API_FIELDS`` lists those it knows).

    Raises:
        RequestValidationError: naming the field: wrong type, out of range, an upscaler not
            in ``upscaler_names``, or (any field) a lone surrogate or NaN/Infinity.
    """
    if not isinstance(payload, Mapping):
        raise RequestValidationError("payload", "must be a JSON object")
    check_json_values(payload)
    shown = payload.get("show_extras_results")
    if shown is not None and not isinstance(shown, bool):
        raise RequestValidationError("show_extras_results", f"must be true or false, got {shown!r}")
    values: dict[str, Any] = {}
    for key, value in payload.items():
        if key in _HANDLED_ELSEWHERE or key not in _REQUEST_FIELDS or value is None:
            continue
        is_whole_float = isinstance(value, float) and value.is_integer()
        if key in ("resize_mode", "upscaling_resize_w", "upscaling_resize_h") and is_whole_float:
            value = int(value)
        values[key] = value
    request = ExtrasRequest(**values)
    request.check_upscalers(upscaler_names)
    return request


def extras_parameters(request: ExtrasRequest) -> dict[str, Any]:
    """A1111's ``Postprocess …`` infotext keys for ``request``, in A1111's order; empty when
    Upscaler 1 is "None" (nothing is done)."""
    if not request.uses_upscaler_1:
        return {}
    params: dict[str, Any] = {}
    if request.resize_mode == 1:
        params["Postprocess upscale to"] = f"{request.upscaling_resize_w}x{request.upscaling_resize_h}"
        if request.upscaling_crop:
            params["Postprocess crop to fit"] = True
    else:
        params["Postprocess upscale by"] = request.upscaling_resize
    params["Postprocess upscaler"] = request.upscaler_1
    if request.uses_upscaler_2:
        params["Postprocess upscaler 2"] = request.upscaler_2
        params["Postprocess upscaler 2 visibility"] = request.extras_upscaler_2_visibility
    return params


def extras_infotext(source: str | None, parameters: Mapping[str, Any]) -> str:
    """``source`` (the picture's own infotext, may be empty) with ``parameters`` appended.

    They join the source's parameter line when it has one, so the result still parses as one
    infotext; otherwise they go on a line of their own.
    """
    added = build_infotext("", "", parameters).lstrip("\n")
    original = (source or "").rstrip()
    if not added or not original:
        return added or original
    has_parameter_line = len(parse_infotext(original)) > 2  # more than "Prompt" and "Negative prompt"
    return f"{original}, {added}" if has_parameter_line else f"{original}\n{added}"


def _resolve(library: UpscalerLibrary, name: str, field_name: str) -> Upscaler:
    try:
        return library.get(name)
    except UnknownUpscalerError as error:
        raise RequestValidationError(field_name, str(error)) from None


def _working_image(source: Image.Image) -> Image.Image:
    """``source`` in a mode every upscaler and ``Image.blend`` handle; transparency is kept."""
    if source.mode in ("RGB", "RGBA", "L", "LA"):
        return source
    has_alpha = source.mode in ("PA", "La") or "transparency" in source.info
    return source.convert("RGBA" if has_alpha else "RGB")


def _upscale(image: Image.Image, request: ExtrasRequest, upscaler: Upscaler) -> Image.Image:
    if request.resize_mode == 1:
        return upscale_to(upscaler, image, request.upscaling_resize_w, request.upscaling_resize_h,
                          request.upscaling_crop)
    return upscale_by(upscaler, image, request.upscaling_resize)


def _upscaled_size(size: tuple[int, int], request: ExtrasRequest) -> tuple[int, int]:
    """The size the upscaler is asked to make from a ``size`` image (for "Scale to", the size
    that covers the target, before the crop or stretch)."""
    if request.resize_mode == 1:
        scale = cover_scale(size, request.upscaling_resize_w, request.upscaling_resize_h)
    else:
        scale = request.upscaling_resize
    return round(size[0] * scale), round(size[1] * scale)


def check_extras_sizes(images: Sequence[tuple[str, Image.Image]], request: ExtrasRequest,
                       field: str = "image") -> None:
    """Refuse, before any upscaling, an input over ``MAX_INPUT_PIXELS``, inputs adding up to more
    than ``MAX_REQUEST_PIXELS``, or upscales whose results would be over ``MAX_UPSCALED_PIXELS``
    (each, and all together: the job holds them all); only the images' sizes are read.

    Raises:
        RequestValidationError: naming ``field`` (the input) or the scale field that asks too much:
            ``upscaling_resize`` ("Scale by"), ``upscaling_resize_w`` ("Scale to").
    """
    scale_field = "upscaling_resize_w" if request.resize_mode == 1 else "upscaling_resize"
    budget, made = PixelBudget(), 0
    for k, (_, image) in enumerate(images):
        where = field if len(images) == 1 else f"{field}.{k}"
        check_input_pixels(image.size, where)
        budget.take(image, where)
        if not request.uses_upscaler_1:
            continue
        width, height = _upscaled_size(image.size, request)
        made += width * height  # the results are held together until the job ends
        if width * height > MAX_UPSCALED_PIXELS:
            source = f"{image.width}x{image.height}"
            asked = (f"scaling {source} by {request.upscaling_resize:g}" if request.resize_mode == 0
                     else f"covering {request.upscaling_resize_w}x{request.upscaling_resize_h} from {source}")
            raise RequestValidationError(scale_field, f"{asked} would make {width}x{height} pixels; upscales are "
                                                      f"made up to {MAX_UPSCALED_PIXELS:,} pixels; ask for less")
        if made > MAX_UPSCALED_PIXELS:
            raise RequestValidationError(scale_field, f"the {len(images)} upscaled images would add up to more than "
                                                      f"{MAX_UPSCALED_PIXELS:,} pixels; ask for less or send fewer")


def _file_stem(name: str) -> str:
    """The part of the saved file name after the counter: the source's stem, made safe."""
    stem = _UNSAFE_NAME_CHARS.sub("_", Path(name).stem).strip("._")[:64]
    return stem or "extras"


def run_extras(images: Sequence[tuple[str, Image.Image]], request: ExtrasRequest, library: UpscalerLibrary,
               output: OutputOptions | None = None) -> list[ExtrasResult]:
    """Upscale each ``(name, image)`` and save it; results come back in the input's order.

    Each image may have any size and mode; the result keeps RGB/RGBA/L/LA modes (others become
    RGB or RGBA). Files are ``NNNNN-<name stem>.png`` in ``output.target()`` (the dated folder)
    with the infotext in the PNG's "parameters" chunk when ``output.embed_infotext``.

    Raises:
        RequestValidationError: an upscaler name is unknown, or a size is over the limits
            (``check_extras_sizes``); the field is named.
        ModelFileError: an upscaler's model file cannot be used.
    """
    # 1. Check the sizes and resolve both upscalers before any work, so a bad request fails
    #    before anything is upscaled or saved.
    check_extras_sizes(images, request)
    #    With two models, both stay referenced for the whole batch instead of reloading per image.
    first = _resolve(library, request.upscaler_1, "upscaler_1") if request.uses_upscaler_1 else None
    second = _resolve(library, request.upscaler_2, "upscaler_2") if request.uses_upscaler_2 else None
    parameters = extras_parameters(request)
    results = []
    for name, source in images:
        # 2. Upscale, then blend Upscaler 2's result over it.
        image = _working_image(source)
        if first is not None:
            upscaled = _upscale(image, request, first)
            if second is not None:
                upscaled = blend_upscalers(upscaled, _upscale(image, request, second),
                                           request.extras_upscaler_2_visibility)
            image = upscaled
        # 3. Keep the source's infotext, add the Postprocess keys, save.
        infotext = extras_infotext(embedded_infotext(source) or None, parameters)
        path = None
        if output is not None and output.save:
            embedded = infotext if output.embed_infotext else None
            path = save_image(image, output.target(), _file_stem(name), embedded or None,
                              image_format=output.image_format)
        results.append(ExtrasResult(name, image, infotext, path))
    return results
