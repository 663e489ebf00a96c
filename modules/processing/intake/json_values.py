"""Values JSON allows but no field can hold: text with a lone surrogate (the ``"\\ud800"``
escape decodes to a string that cannot be written as UTF-8: not into a PNG's infotext, a log,
the job store or the answer) and NaN/Infinity (Python's ``json`` reads those literals, and a NaN
compares false with every bound, so a range check would let it through).

Every payload passes ``check_json_values`` before its fields are read, so each field, known or
not, nested or not, is refused by name with the same message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from modules.processing.errors import RequestValidationError

__all__ = ["check_json_values"]


def _is_bad_text(text: str) -> bool:
    if text.isascii():  # the common case, and every base64 image: no scan of its characters
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _shown(key: Any) -> str:
    """A key as a field name that can itself be shown (a bad key is escaped, not echoed)."""
    text = str(key)
    return text.encode("utf-8", "backslashreplace").decode("utf-8") if _is_bad_text(text) else text


def check_json_values(value: Any, where: str = "") -> None:
    """Raise ``RequestValidationError`` naming the first field (``prompt``, ``alwayson_scripts.
    ControlNet.args.0.weight``; ``where`` prefixes it) that holds text with a lone surrogate or a
    NaN/Infinity number. Other objects (PIL images from the UI) are not looked into."""
    stack: list[tuple[str, Any]] = [(where, value)]
    while stack:
        path, item = stack.pop()
        name = path or "body"
        if isinstance(item, str):
            if _is_bad_text(item):
                raise RequestValidationError(name, "holds a lone UTF-16 surrogate (such as \\ud800), which is not "
                                                   "text; send valid Unicode")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise RequestValidationError(name, f"must be a finite number, got {item}")
        elif isinstance(item, Mapping):
            for key, child in item.items():
                child_path = f"{path}.{_shown(key)}" if path else _shown(key)
                if isinstance(key, str) and _is_bad_text(key):
                    raise RequestValidationError(child_path, "the field's name holds a lone UTF-16 surrogate; "
                                                             "send valid Unicode")
                stack.append((child_path, child))
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{path}.{k}" if path else str(k), child) for k, child in enumerate(item))
