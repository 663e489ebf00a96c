"""From the img2img tab's controls to an A1111 img2img payload (no gradio needed, so tested
directly): which sub-tab is open decides where the input image and the mask come from.

* ``img2img``: the uploaded image; no mask.
* ``Sketch``: the editor's composite (the drawing is part of the input); no mask.
* ``Inpaint``: the editor's background; the mask is where the brush painted (layer alpha).
* ``Inpaint sketch``: the composite (the coloured strokes are content) and, as the mask,
  where the strokes are.
* ``Inpaint upload``: the image and a separate mask image (white = repaint, thresholded).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PIL import Image, ImageChops

from modules.processing.errors import RequestValidationError
from modules.processing.intake.image_input import open_image_file

__all__ = ["INPAINT_MODES", "MODES", "build_img2img_payload", "inpaint_flags", "layers_mask", "settings_payload"]

MODES = ("img2img", "Sketch", "Inpaint", "Inpaint sketch", "Inpaint upload", "Batch")
INPAINT_MODES = ("Inpaint", "Inpaint sketch", "Inpaint upload")
# Controls whose values pass through to the payload under the same (A1111) name.
_PASS_THROUGH = ("resize_mode", "mask_blur", "inpainting_fill", "inpaint_full_res_padding", "denoising_strength")
_SCRIPT_CONTROLS = {
    "Poor man's outpainting": {"pixels": "pixels", "script_mask_blur": "mask_blur",
                               "script_inpainting_fill": "inpainting_fill", "direction": "direction"},
    "Outpainting mk2": {"pixels": "pixels", "script_mask_blur": "mask_blur", "direction": "direction",
                        "noise_q": "noise_q", "color_variation": "color_variation"},
}


def layers_mask(editor: Mapping[str, Any] | None) -> Image.Image | None:
    """Where an ImageEditor's layers were painted: L, 255 where any layer is opaque; None if no layers."""
    layers = [layer for layer in (editor or {}).get("layers") or [] if isinstance(layer, Image.Image)]
    if not layers:
        return None
    mask = layers[0].convert("RGBA").getchannel("A")
    for layer in layers[1:]:
        mask = ImageChops.lighter(mask, layer.convert("RGBA").getchannel("A"))
    return mask.point(lambda alpha: 255 if alpha > 0 else 0)


def _painted_mask(editor: Mapping[str, Any] | None, size: tuple[int, int]) -> Image.Image:
    """The editor's painted area at the image's size; all black when nothing was painted, so the
    engine answers with its "mask is empty" notice (or, for "Inpaint not masked", repaints all)."""
    mask = layers_mask(editor)
    if mask is None:
        return Image.new("L", size, 0)
    return mask if mask.size == size else mask.resize(size, Image.Resampling.NEAREST)


def _editor_part(editor: Mapping[str, Any] | None, part: str, mode: str) -> Image.Image:
    image = (editor or {}).get(part)
    if not isinstance(image, Image.Image):
        raise RequestValidationError("image", f"upload an image in the {mode} tab first")
    return image


def _uploaded(value: Any, field: str) -> Image.Image | None:
    """An image input's value as RGBA (as gradio's ``image_mode="RGBA"`` gave it): an uploaded
    file's path is opened here, its size checked from the header before it is decoded."""
    if isinstance(value, str) and value:
        return open_image_file(value, field).convert("RGBA")
    return value if isinstance(value, Image.Image) else None


def _images(values: Mapping[str, Any]) -> tuple[Image.Image, Image.Image | None]:
    mode = values["mode"]
    if mode == "img2img":
        image = _uploaded(values.get("init_image"), "image")
        if image is None:
            raise RequestValidationError("image", "upload an image in the img2img tab first")
        return image, None
    if mode == "Sketch":
        return _editor_part(values.get("sketch"), "composite", mode), None
    if mode in ("Inpaint", "Inpaint sketch"):
        # Inpaint repaints under the brush over the untouched background; Inpaint sketch keeps the
        # coloured strokes as content too, so its input is the composite.
        editor = values.get("inpaint_image" if mode == "Inpaint" else "inpaint_sketch")
        image = _editor_part(editor, "background" if mode == "Inpaint" else "composite", mode)
        return image, _painted_mask(editor, image.size)
    image = _uploaded(values.get("inpaint_upload_image"), "image")
    mask = _uploaded(values.get("inpaint_upload_mask"), "mask")
    if image is None or mask is None:
        raise RequestValidationError("mask", "upload both an image and a mask in the Inpaint upload tab")
    return image, mask


def inpaint_flags(values: Mapping[str, Any]) -> dict[str, Any]:
    """The Mask mode and Inpaint area radios as A1111's ``inpainting_mask_invert``/``inpaint_full_res``."""
    return {"inpainting_mask_invert": int(values.get("mask_mode") == "Inpaint not masked"),
            "inpaint_full_res": values.get("inpaint_area") == "Only masked"}


def _script_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    script = values.get("script_name") or "None"
    if script == "None":
        return {}
    if script not in _SCRIPT_CONTROLS:  # a user script: its script_args are already in the values
        return {"script_name": script}
    controls = _SCRIPT_CONTROLS[script]
    return {"script_name": script, "script_args": {arg: values[name] for name, arg in controls.items()}}


def settings_payload(values: Mapping[str, Any]) -> dict[str, Any]:
    """The payload without its images: the shared sampler/size/seed fields, denoising strength,
    resize mode and the chosen script (what a Batch run applies to every file)."""
    own = {"mode", "init_image", "sketch", "inpaint_image", "inpaint_sketch", "inpaint_upload_image",
           "inpaint_upload_mask", "batch_input_dir", "batch_output_dir", "batch_mask_dir", "mask_mode",
           "inpaint_area", "script_name", *_PASS_THROUGH,
           *{name for controls in _SCRIPT_CONTROLS.values() for name in controls}}
    payload = {name: value for name, value in values.items() if name not in own}
    payload.update({name: values[name] for name in _PASS_THROUGH if name in values})
    payload.update(_script_fields(values))
    return payload


def build_img2img_payload(values: Mapping[str, Any]) -> dict[str, Any]:
    """The A1111 payload for the tab's ``values`` (the shared controls plus this tab's, by name).

    The mode-specific inputs (``mode``, the editors, the inpaint radios) become
    ``init_images``/``mask``/``inpainting_mask_invert``/``inpaint_full_res``. Not for "Batch".

    Raises:
        RequestValidationError: the open sub-tab lacks its image (named ``image``/``mask``).
    """
    mode = values["mode"]
    if mode not in MODES or mode == "Batch":
        raise ValueError(f"no single-image payload for mode {mode!r}")
    payload = settings_payload(values)
    image, mask = _images(values)
    payload["init_images"] = [image]
    if mask is not None:
        payload.update({"mask": mask, **inpaint_flags(values)})
    else:
        for name in ("mask_blur", "inpainting_fill", "inpaint_full_res_padding"):
            payload.pop(name, None)
    return payload
