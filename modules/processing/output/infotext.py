"""A1111 infotext: the "parameters" text stored in every PNG, written and read back.

Format (A1111 ``create_infotext``): the prompt, then ``Negative prompt: ...`` if any, then one
line of ``Key: value`` pairs joined by ", " in A1111's fixed key order, extra keys after them
in insertion order, then ``Version``. A value containing ",", ":" or a newline is JSON-quoted.
The parser follows A1111's ``parse_generation_parameters``, so it reads A1111's own PNGs too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from modules import __version__

__all__ = ["INFOTEXT_KEY_ORDER", "build_infotext", "format_value", "parse_infotext", "quote"]

#: A1111 1.10's order of the built-in keys, with Forge's "Distilled CFG Scale" beside "CFG
#: scale"; anything else follows in insertion order.
INFOTEXT_KEY_ORDER: tuple[str, ...] = (
    "Steps", "Sampler", "Schedule type", "CFG scale", "Distilled CFG Scale", "Image CFG scale", "Seed",
    "Face restoration", "Size", "Model hash", "Model", "FP8 weight", "Cache FP16 weight for LoRA", "VAE hash",
    "VAE", "Variation seed", "Variation seed strength", "Seed resize from", "Denoising strength",
    "Conditional mask weight", "Clip skip", "ENSD", "Token merging ratio", "Token merging ratio hr",
    "Init image hash", "RNG", "NGMS", "Tiling",
)
_TRAILING_KEYS = ("Version", "User")
VERSION = f"aigen-v{__version__}"

# A1111's re_param: a key (word chars, spaces, '-' and '/'), then a quoted or comma-free value.
_PARAM_RE = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE_RE = re.compile(r"^(\d+)x(\d+)$")


def quote(text: str) -> str:
    """JSON-quote a value that would break the one-line format (A1111 ``quote``)."""
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def format_value(value: Any) -> str:
    """A value as A1111 prints it: whole floats without ".0", booleans as True/False."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def build_infotext(prompt: str, negative_prompt: str, params: Mapping[str, Any]) -> str:
    """Assemble an infotext from the prompts and a key -> value mapping.

    Keys with value None are left out. A value equal to its key is written bare (A1111's
    flags). Built-in keys are put in A1111's order whatever the mapping's order.
    """
    ordered = [k for k in INFOTEXT_KEY_ORDER if k in params]
    ordered += [k for k in params if k not in INFOTEXT_KEY_ORDER and k not in _TRAILING_KEYS]
    ordered += [k for k in _TRAILING_KEYS if k in params]
    pairs = []
    for key in ordered:
        value = params[key]
        if value is None:
            continue
        text = format_value(value)
        pairs.append(key if text == key else f"{key}: {quote(text)}")
    negative = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{', '.join(pairs)}"


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            return str(json.loads(text))
        except ValueError:
            return text
    return text


def parse_infotext(text: str) -> dict[str, str]:
    """Parse an infotext into ``{"Prompt", "Negative prompt", key: value, ...}``.

    Like A1111, the last line counts as the parameter line only if it has at least three
    ``Key: value`` pairs; ``Size: 512x768`` also yields ``Size-1`` (width) and ``Size-2``.
    Values are returned unquoted, as strings.
    """
    *lines, last = text.strip().split("\n")
    if len(_PARAM_RE.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    for raw in lines:
        line = raw.strip()
        if line.startswith("Negative prompt:"):
            negative.append(line[len("Negative prompt:"):].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    result = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in _PARAM_RE.findall(last):
        value = _unquote(value.strip())
        result[key] = value
        size = _SIZE_RE.match(value)
        if size:
            result[f"{key}-1"], result[f"{key}-2"] = size.group(1), size.group(2)
    return result
