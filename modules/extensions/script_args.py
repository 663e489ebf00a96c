"""Script argument descriptions: one ``ArgSpec`` per named argument feeds the web UI, the REST
API (``alwayson_scripts`` / ``script_args``), ``/sdapi/v1/script-info`` and gradio_client.

Besides the plain kinds (slider, number, checkbox, dropdown, text) there are two for scripts
such as ControlNet: ``ImageArg`` (a PIL image, sent over the API as base64) and ``Group`` (a
named set of fields that travels as one JSON object, e.g. one ControlNet unit). A group may
``normalize`` the legacy forms existing clients send before its fields are checked, read its
value back from an infotext (``parse_text``) and offer a preview in the UI (``preview``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from modules.processing.editing.image_ops import flatten
from modules.processing.intake.image_input import check_input_pixels, decode_base64_image

__all__ = ["ArgSpec", "Checkbox", "Dropdown", "Group", "ImageArg", "Number", "ScriptArgError", "Slider", "Textbox"]


class ScriptArgError(ValueError):
    """A script argument is missing, unknown or out of range; the message names the script and argument."""


@dataclass(frozen=True)
class ArgSpec:
    """One named script argument: how it is shown and what it accepts.

    ``kind`` is "slider", "number", "checkbox", "dropdown", "text", "image" or "group";
    ``minimum``/``maximum`` bound numbers, ``choices`` lists a dropdown's values, ``integer``
    makes numbers whole; a group's ``fields`` are its own named ``ArgSpec``s. ``info`` is a
    line the web UI shows under the control (e.g. why a dropdown has nothing to choose).
    """

    kind: str
    label: str
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    integer: bool = False
    fields: tuple[tuple[str, ArgSpec], ...] = ()
    #: group: turns what a client sent into ``{field: value}`` (may raise ValueError).
    normalize: Callable[[Any], Any] | None = field(default=None, compare=False)
    #: group: an infotext value back into ``{field: value}`` (may raise ValueError).
    parse_text: Callable[[str], Any] | None = field(default=None, compare=False)
    #: group: the web UI's "Preview" button: ``{field: value}`` -> an image to show.
    preview: Callable[[Mapping[str, Any]], Image.Image] | None = field(default=None, compare=False)
    info: str = ""

    def coerce(self, value: Any, where: str) -> Any:
        """The value as this argument holds it; ``where`` ("Brighten: amount") starts any error.

        Raises:
            ScriptArgError: wrong type, out of range, or not one of the choices.
        """
        if self.kind == "group":
            return self._group(value, where)
        if self.kind == "image":
            return _image(value, where)
        if self.kind == "checkbox":
            if not isinstance(value, bool):
                raise ScriptArgError(f"{where}: expected true or false, got {value!r}")
            return value
        if self.kind in ("dropdown", "text"):
            if not isinstance(value, str):
                raise ScriptArgError(f"{where}: expected text, got {value!r}")
            if self.choices and value not in self.choices:
                raise ScriptArgError(f"{where}: {value!r} is not one of {', '.join(self.choices)}")
            return value
        return self._number(value, where)

    def _number(self, value: Any, where: str) -> float | int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ScriptArgError(f"{where}: expected a number, got {value!r}")
        if self.integer:
            if float(value) != int(value):
                raise ScriptArgError(f"{where}: expected a whole number, got {value!r}")
            value = int(value)
        if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
            raise ScriptArgError(f"{where}: {value!r} is outside {self.minimum}..{self.maximum}")
        return value

    def _group(self, value: Any, where: str) -> dict[str, Any]:
        """Every field of the group: the given ones checked, the others at their defaults.

        Keys the group does not know are ignored: clients of A1111 extensions send fields
        (``lowvram``, ``save_detected_map``, ...) that change nothing here.
        """
        if self.normalize is not None:
            try:
                value = self.normalize(value)
            except ScriptArgError:
                raise
            except ValueError as error:
                raise ScriptArgError(f"{where}: {error}") from None
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ScriptArgError(f"{where}: expected an object with {', '.join(n for n, _ in self.fields)}, "
                                 f"got {type(value).__name__}")
        return {name: spec.coerce(value[name], f"{where}.{name}") if name in value else spec.default
                for name, spec in self.fields}

    def default_value(self) -> Any:
        """The default, as a fresh object for a group (hooks may keep or change what they get)."""
        return dict(self.default) if self.kind == "group" else self.default

    def describe(self) -> dict[str, Any]:
        """The JSON form served by ``/sdapi/v1/script-info`` and the gradio_client docs."""
        info: dict[str, Any] = {"kind": self.kind, "label": self.label, "default": self.default}
        for key in ("minimum", "maximum", "step"):
            if getattr(self, key) is not None:
                info[key] = getattr(self, key)
        if self.choices:
            info["choices"] = list(self.choices)
        if self.info:
            info["info"] = self.info
        if self.fields:
            info["fields"] = {name: spec.describe() for name, spec in self.fields}
        return info


def _image(value: Any, where: str) -> Image.Image | None:
    """An image argument from any surface: a PIL image (web UI), base64 text (REST, A1111's
    ``{"image": b64, "mask": b64}`` included), a numpy array, or nothing."""
    if value is None or (isinstance(value, str) and not value):
        return None
    if isinstance(value, Mapping):
        for key in ("image", "composite", "background"):  # A1111 units, then Gradio's ImageEditor value
            if value.get(key) is not None:
                return _image(value[key], where)
        return None
    try:
        if isinstance(value, Image.Image):
            image = value
        elif isinstance(value, np.ndarray) and value.ndim in (2, 3):
            image = Image.fromarray(value.astype(np.uint8))
        elif isinstance(value, str):
            image = decode_base64_image(value, where)  # size checked from the header, then decoded
        else:
            image = None
        if image is not None:
            check_input_pixels(image.size, where)
            return flatten(image)  # transparency on white, as img2img's input
    except ValueError as error:
        raise ScriptArgError(str(error)) from None
    raise ScriptArgError(f"{where}: expected a base64-encoded image, got {type(value).__name__}")


def Slider(label: str, minimum: float, maximum: float, default: float, step: float = 1.0) -> ArgSpec:  # noqa: N802
    """A number between ``minimum`` and ``maximum``; whole numbers when all four are whole."""
    whole = all(float(v).is_integer() for v in (minimum, maximum, default, step))
    return ArgSpec("slider", label, default, minimum, maximum, step, integer=whole)


def Number(label: str, default: float, minimum: float | None = None, maximum: float | None = None,  # noqa: N802
           integer: bool = False) -> ArgSpec:
    return ArgSpec("number", label, default, minimum, maximum, integer=integer)


def Checkbox(label: str, default: bool = False) -> ArgSpec:  # noqa: N802
    return ArgSpec("checkbox", label, default)


def Dropdown(label: str, choices: tuple[str, ...] | list[str], default: str | None = None,  # noqa: N802
             info: str = "") -> ArgSpec:
    """One of ``choices`` (default: the first); ``info`` is shown under it in the web UI."""
    choices = tuple(choices)
    return ArgSpec("dropdown", label, default if default is not None else choices[0], choices=choices, info=info)


def Textbox(label: str, default: str = "") -> ArgSpec:  # noqa: N802
    return ArgSpec("text", label, default)


def ImageArg(label: str) -> ArgSpec:  # noqa: N802
    """An optional image: a PIL image in hooks (RGB), or None when none was given."""
    return ArgSpec("image", label, None)


def Group(label: str, fields: Mapping[str, ArgSpec], *,  # noqa: N802
          normalize: Callable[[Any], Any] | None = None, parse_text: Callable[[str], Any] | None = None,
          preview: Callable[[Mapping[str, Any]], Image.Image] | None = None) -> ArgSpec:
    """Fields that travel together as one object (a tab in the UI); hooks get ``{field: value}``."""
    return ArgSpec("group", label, {name: spec.default for name, spec in fields.items()},
                   fields=tuple(fields.items()), normalize=normalize, parse_text=parse_text, preview=preview)
