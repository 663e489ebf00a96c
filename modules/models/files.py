"""Reading model files safely: safetensors header checks and the pickle policy.

Every check here runs before a single tensor byte is read. A bad file raises a typed
``ModelFileError`` that names the file and says what is wrong with it; errors are classified
by what we read, never by matching library messages (they change between releases).
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "MAX_HEADER_BYTES",
    "PICKLE_REFUSED",
    "PICKLE_SUFFIXES",
    "SAFETENSORS_SUFFIXES",
    "ModelFileError",
    "SafetensorsHeader",
    "check_model_content",
    "load_pickle",
    "load_state_dict",
    "public_text",
    "read_safetensors_header",
]

# Bytes per element of each safetensors dtype name (the format's own list).
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}
#: The safetensors format itself rejects larger headers (100 MB).
MAX_HEADER_BYTES = 100 * 1024 * 1024
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
#: Why a pickle file is not loaded without ``--allow-pickle`` (the one wording everywhere).
PICKLE_REFUSED = ("is a pickle file, which can run code when loaded; convert it to .safetensors, or start with "
                  "--allow-pickle to load it with torch.load(weights_only=True)")

# Terminal colour and cursor codes (libraries put them in exception text, e.g. torch.load's
# weights_only message), and absolute paths of either style (POSIX, Windows drive or share).
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
_PATH_PART = r"[^\s'\"`:;,()<>\[\]]"
_ABSOLUTE_PATH = re.compile(rf"(?<![\w:/.~-])(?:[A-Za-z]:[\\/]|\\\\|/)(?:{_PATH_PART}+[\\/])+({_PATH_PART}*)")


def public_text(text: str) -> str:
    """``text`` fit for a client: no terminal codes, and each absolute path cut to its last part.

    Library messages (diffusers, torch, spandrel) name files by their full path and some
    colour their text; neither may reach an API client or a browser on another machine.
    """
    return _ABSOLUTE_PATH.sub(lambda match: match.group(1), _ANSI.sub("", text))


class ModelFileError(Exception):
    """A model file cannot be used.

    Attributes:
        path: the file.
        kind: one of "missing", "truncated", "header_too_large", "not_safetensors",
            "lfs_pointer", "html_page", "pickle_refused", "pickle_unsafe", "unsupported", "incomplete".
    """

    def __init__(self, path: Path | str, kind: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = Path(path)
        self.kind = kind
        self.detail = detail

    @property
    def public_message(self) -> str:
        """The message for a client: the file's name (never its folder) and the detail, with no
        paths or terminal codes in it. ``str()`` starts with the full path: that is for the log."""
        return f"{self.path.name}: {public_text(self.detail)}"


@dataclass(frozen=True)
class SafetensorsHeader:
    """The parsed JSON header of a safetensors file: tensor names, shapes, dtypes, metadata."""

    tensors: Mapping[str, Mapping[str, Any]]
    metadata: Mapping[str, str]

    def shape(self, key: str) -> tuple[int, ...] | None:
        entry = self.tensors.get(key)
        return tuple(entry["shape"]) if entry else None


def _sniff_text_file(path: Path, head: bytes) -> None:
    """Recognise the two common impostors: a git-lfs pointer and a saved HTML page."""
    text = head.lstrip().lower()
    if text.startswith(b"version https://git-lfs"):
        raise ModelFileError(path, "lfs_pointer", "is a git-lfs pointer, not the model; run `git lfs pull` "
                             "or download the real file")
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")):
        raise ModelFileError(path, "html_page", "is a web page saved under a model name, not a model; "
                             "the download probably failed or needed a login")


def read_safetensors_header(path: Path | str) -> SafetensorsHeader:
    """Read and validate a safetensors header without reading any tensor data.

    Checks, in order: file size, impostor text files, header length against both the format
    cap and the file size (so a corrupt length never makes us allocate), JSON object shape,
    and that every tensor's byte range lies inside the file.

    Raises:
        ModelFileError: with ``kind`` saying what is wrong.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                _sniff_text_file(path, head)
                raise ModelFileError(path, "truncated", f"is only {size} bytes; a safetensors file starts "
                                     "with an 8-byte header length")
            (header_len,) = struct.unpack("<Q", head)
            if header_len > MAX_HEADER_BYTES or header_len > size - 8:
                _sniff_text_file(path, head + handle.read(64))
                kind = "header_too_large" if header_len > MAX_HEADER_BYTES else "truncated"
                raise ModelFileError(path, kind, f"declares a {header_len}-byte header but the file has "
                                     f"{size} bytes: truncated or not a safetensors file")
            raw = handle.read(header_len)
    except FileNotFoundError:
        raise ModelFileError(path, "missing", "does not exist") from None
    return _parse_header(path, raw, size - 8 - header_len)


def _parse_header(path: Path, raw: bytes, data_size: int) -> SafetensorsHeader:
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        _sniff_text_file(path, raw[:64])
        raise ModelFileError(path, "not_safetensors", "has no valid safetensors header (not JSON)") from None
    if not isinstance(header, dict):
        raise ModelFileError(path, "not_safetensors", "has a safetensors header that is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    for name, entry in header.items():
        _check_entry(path, name, entry, data_size)
    return SafetensorsHeader(tensors=header, metadata=metadata if isinstance(metadata, dict) else {})


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_entry(path: Path, name: str, entry: Any, data_size: int) -> None:
    """One tensor entry: known dtype, a shape of counts, offsets inside the data section whose
    length matches shape x dtype size (so a later read can neither overrun nor misparse)."""
    if not isinstance(entry, dict):
        raise ModelFileError(path, "not_safetensors", f"has a malformed entry for tensor {name!r}")
    shape, offsets, dtype = entry.get("shape"), entry.get("data_offsets"), entry.get("dtype")
    well_formed = (
        isinstance(shape, list) and all(_is_count(d) for d in shape)
        and isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)
        and dtype in _DTYPE_BYTES and offsets[0] <= offsets[1]
    )
    if not well_formed:
        raise ModelFileError(path, "not_safetensors", f"has a malformed entry for tensor {name!r}")
    if offsets[1] > data_size:
        raise ModelFileError(path, "truncated", f"is truncated: tensor {name!r} ends at byte {offsets[1]} "
                             f"of a {data_size}-byte data section")
    if math.prod(shape) * _DTYPE_BYTES[dtype] != offsets[1] - offsets[0]:
        raise ModelFileError(path, "not_safetensors", f"has tensor {name!r} whose shape {shape} and dtype "
                             f"{dtype} do not match its {offsets[1] - offsets[0]} bytes")


def load_state_dict(path: Path | str, allow_pickle: bool = False, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Load every tensor of a model file.

    safetensors files are validated first. Pickle formats (.ckpt/.pt/.pth/.bin) are refused
    unless ``allow_pickle``; even then only ``torch.load(weights_only=True)`` is used, which
    rejects pickles that would run code, and there is no fallback.

    Raises:
        ModelFileError: the file is unusable or refused.
    """
    from safetensors.torch import load_file

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        read_safetensors_header(path)
        return load_file(str(path), device=device)
    if suffix not in PICKLE_SUFFIXES:
        raise ModelFileError(path, "unsupported", f"has an unsupported extension {suffix!r}")
    loaded = load_pickle(path, allow_pickle, device)
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict):
        raise ModelFileError(path, "unsupported", "does not contain a state dict")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_pickle(path: Path, allow_pickle: bool, device: str = "cpu") -> Any:
    """The object in a pickle model file, loaded with ``torch.load(weights_only=True)`` only.

    Raises:
        ModelFileError: ``allow_pickle`` is off ("pickle_refused"), or the file holds more
            than tensors and plain containers ("pickle_unsafe").
    """
    if not allow_pickle:
        raise ModelFileError(path, "pickle_refused", PICKLE_REFUSED)
    try:
        return torch.load(str(path), map_location=device, weights_only=True)
    except Exception as error:  # weights_only raises UnpicklingError and others on unsafe content
        # torch's own text is pages long, bold in terminal codes, and tells users to turn the
        # safety off; what matters is which object it refused, when it names one.
        named = re.search(r"GLOBAL (\S+) was not an allowed global", str(error))
        what = f" (it holds {named.group(1)})" if named else ""
        raise ModelFileError(path, "pickle_unsafe", f"holds more than tensors{what}, so it was not loaded: "
                             "torch.load(weights_only=True) refuses objects that could run code") from None


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6
_PICKLE_PROTOCOLS = range(2, 6)  # the legacy torch.save format starts with a pickle PROTO opcode


def check_model_content(path: Path | str, suffix: str | None = None) -> None:
    """Check ``path`` as the loader would before it reads any weights, from its suffix
    (or ``suffix``: the one it will have, for a download still in its temp file).

    safetensors: the whole header (``read_safetensors_header``). Pickle formats: not a git-lfs
    pointer or a web page, and a PyTorch zip archive or a pickle (what ``torch.load`` reads).
    Nothing is unpickled. Other suffixes: only the impostor check.

    Raises:
        ModelFileError: with ``kind`` saying what is wrong.
    """
    path = Path(path)
    suffix = (suffix if suffix is not None else path.suffix).lower()
    if suffix in SAFETENSORS_SUFFIXES:
        read_safetensors_header(path)
        return
    try:
        with path.open("rb") as handle:
            head = handle.read(512)
    except FileNotFoundError:
        raise ModelFileError(path, "missing", "does not exist") from None
    _sniff_text_file(path, head)
    is_pickle = len(head) >= 2 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS
    if suffix in PICKLE_SUFFIXES and not (head.startswith(_ZIP_MAGIC) or is_pickle):
        raise ModelFileError(path, "unsupported", "is neither a PyTorch archive nor a pickle, so not a model file")
