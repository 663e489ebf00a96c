"""Prompt styles: A1111's ``styles.csv`` (name, prompt, negative_prompt).

Applying a style adds its text to the prompt: a style text containing ``{prompt}`` has the
user's prompt put in that place, otherwise it is appended after a comma. Several styles
apply in the order given. The file is read on every use (it is small and users edit it by
hand) and written atomically.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modules.processing.errors import RequestValidationError, no_space_as_storage_full

__all__ = ["PromptStyle", "StyleStore", "apply_payload_styles", "apply_style_text"]

_FIELDS = ("name", "prompt", "negative_prompt")


@dataclass(frozen=True)
class PromptStyle:
    """One row of styles.csv."""

    name: str
    prompt: str = ""
    negative_prompt: str = ""


def apply_style_text(style_text: str, prompt: str) -> str:
    """Merge a style's text into a prompt (A1111's rule, ``{prompt}`` placeholder)."""
    if "{prompt}" in style_text:
        return style_text.replace("{prompt}", prompt)
    if not style_text:
        return prompt
    return f"{prompt}, {style_text}" if prompt else style_text


class StyleStore:
    """The styles of one ``styles.csv``.

    Changes are read-modify-write of the whole file; a lock per store keeps two saves from
    the same server (two browser tabs) from losing each other's style.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def load(self) -> dict[str, PromptStyle]:
        """Styles by name, in file order; a missing file has none, unreadable rows are skipped."""
        try:
            text = self.path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError):
            return {}
        styles: dict[str, PromptStyle] = {}
        for row in csv.DictReader(io.StringIO(text)):
            name = (row.get("name") or "").strip()
            if name:
                styles[name] = PromptStyle(name, row.get("prompt") or "", row.get("negative_prompt") or "")
        return styles

    def apply(self, names: Sequence[str], prompt: str, negative_prompt: str) -> tuple[str, str]:
        """The prompts with the named styles applied in order.

        Raises:
            RequestValidationError: ``styles`` names a style that does not exist.
        """
        styles = self.load()
        for name in names:
            style = styles.get(name)
            if style is None:
                raise RequestValidationError("styles", f"no style named {name!r} in {self.path.name}")
            prompt = apply_style_text(style.prompt, prompt)
            negative_prompt = apply_style_text(style.negative_prompt, negative_prompt)
        return prompt, negative_prompt

    def save(self, style: PromptStyle) -> None:
        """Add ``style``, or replace the one with its name (in place); the file is replaced atomically.

        Raises:
            RequestValidationError: the name is empty.
            OSError: the file cannot be written.
        """
        if not style.name.strip():
            raise RequestValidationError("name", "a style needs a name")
        with self._lock:
            styles = self.load()
            styles[style.name] = style
            self._write(styles.values())

    def delete(self, name: str) -> PromptStyle:
        """Remove the style called ``name``; returns it.

        Raises:
            RequestValidationError: there is no style by that name.
            OSError: the file cannot be written.
        """
        with self._lock:
            styles = self.load()
            removed = styles.pop(name, None)
            if removed is None:
                raise RequestValidationError("name", f"no style named {name!r} in {self.path.name}")
            self._write(styles.values())
        return removed

    def _write(self, styles: Iterable[PromptStyle]) -> None:
        """Write A1111's three columns to a temp file, fsync it, and rename it over the file."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=_FIELDS, lineterminator="\n")
        writer.writeheader()
        for item in styles:
            writer.writerow({"name": item.name, "prompt": item.prompt, "negative_prompt": item.negative_prompt})
        with no_space_as_storage_full("save the styles"):
            self._replace_file(buffer.getvalue())

    def _replace_file(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".styles-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def apply_payload_styles(payload: Mapping[str, Any], store: StyleStore) -> tuple[dict[str, Any], list[str]]:
    """An A1111 payload with its ``styles`` expanded into ``prompt``/``negative_prompt``, and a
    notice per style name that does not exist (it is left out; the job runs with the others).

    Raises:
        RequestValidationError: ``styles`` is not a list of names.
    """
    result = dict(payload)
    names = result.pop("styles", None) or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise RequestValidationError("styles", "must be a list of style names")
    known = store.load()
    notices = [f"styles: no style named {name!r} in {store.path.name}; left out" for name in names
               if name not in known]
    found = [name for name in names if name in known]
    if found:
        prompt, negative = result.get("prompt") or "", result.get("negative_prompt") or ""
        if not isinstance(prompt, str) or not isinstance(negative, str):
            raise RequestValidationError("prompt", "must be a string")
        result["prompt"], result["negative_prompt"] = store.apply(found, prompt, negative)
    return result, notices
