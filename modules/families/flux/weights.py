"""Reading one part's tensors out of a safetensors file, one tensor at a time.

A FLUX part lives either in a file of its own (``clip_l.safetensors``: keys ``text_model.*``) or
under a prefix in a ComfyUI all-in-one checkpoint (``text_encoders.clip_l.transformer.*``,
``text_encoders.t5xxl.transformer.*``, ``vae.*``). The loaders here read only the header to
decide, then read the part's tensors one by one with plain file reads (not a memory map, whose
pages would stay resident beside the converted copy until the file is closed), converting each
to its target dtype and device before the next: host RAM holds the part once, plus one tensor.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import torch

from modules.models.files import ModelFileError, SafetensorsHeader, read_safetensors_header

__all__ = ["FP8_DTYPES", "PartTensors", "find_prefix", "open_part", "resolve_prefix"]

#: safetensors dtype names of 8-bit float storage (ComfyUI's ``*_fp8_e4m3fn`` files).
FP8_DTYPES = {"F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}
_STORED_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                  **FP8_DTYPES, "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                  "U8": torch.uint8, "BOOL": torch.bool}


def find_prefix(keys: Iterable[str], suffix: str) -> str | None:
    """The prefix under which ``suffix`` (a key every file of the part has) appears, shortest first.

    ``find_prefix(keys, "encoder.block.0.layer.0.SelfAttention.q.weight")`` is ``""`` for
    ``t5xxl_fp16.safetensors`` and ``"text_encoders.t5xxl.transformer."`` in an all-in-one file.
    """
    found = [key[: -len(suffix)] for key in keys if key.endswith(suffix)]
    found = [prefix for prefix in found if prefix == "" or prefix.endswith(".")]
    return min(found, key=len) if found else None


def resolve_prefix(path: Path, prefix: str | None, probe: str, what: str) -> str:
    """``prefix`` when given, else the one ``find_prefix`` reads from the file's header.

    Raises:
        ModelFileError: the file has no ``probe`` tensor under any prefix (it is not ``what``).
    """
    if prefix is not None:
        return prefix
    found = find_prefix(read_safetensors_header(path).tensors.keys(), probe)
    if found is None:
        raise ModelFileError(path, "unsupported", f"is not {what} (no {probe} tensor)")
    return found


class PartTensors:
    """The tensors of one part (those under ``prefix``) of an open safetensors file.

    Attributes:
        header: the file's parsed header (names, shapes, dtypes).
        prefix: stripped from every name; ``names`` and ``shape`` use the stripped names.
    """

    def __init__(self, path: Path, header: SafetensorsHeader, prefix: str, handle: IO[bytes],
                 device: torch.device | str) -> None:
        self.path = path
        self.header = header
        self.prefix = prefix
        self._handle = handle
        self._device = torch.device(device)
        # The data section starts after the 8-byte header length and the JSON header.
        handle.seek(0)
        self._data_start = 8 + struct.unpack("<Q", handle.read(8))[0]
        self.names = {key[len(prefix):]: key for key in header.tensors if key.startswith(prefix)}

    def shape(self, name: str) -> tuple[int, ...] | None:
        """The shape of ``name`` (prefix stripped), from the header; None when absent."""
        key = self.names.get(name)
        return tuple(self.header.tensors[key]["shape"]) if key else None

    def dtype_name(self, name: str) -> str | None:
        """The safetensors dtype name ("F16", "F8_E4M3") of ``name``; None when absent."""
        key = self.names.get(name)
        return self.header.tensors[key]["dtype"] if key else None

    def require(self, name: str, what: str) -> tuple[int, ...]:
        """The shape of a tensor the part cannot do without.

        Raises:
            ModelFileError: it is missing (the file is not this part, or is incomplete).
        """
        shape = self.shape(name)
        if shape is None:
            raise ModelFileError(self.path, "incomplete", f"has no {self.prefix}{name} tensor, so it is not a "
                                 f"complete {what}")
        return shape

    def read(self, name: str, dtype: torch.dtype | None) -> torch.Tensor:
        """One tensor, on the part's device, converted to ``dtype`` (None keeps the stored dtype)."""
        entry = self.header.tensors[self.names[name]]
        start, end = entry["data_offsets"]
        stored = _STORED_DTYPES.get(entry["dtype"])
        if stored is None:
            raise ModelFileError(self.path, "unsupported", f"stores {self.names[name]!r} as {entry['dtype']}, "
                                 "which cannot be read")
        buffer = bytearray(end - start)
        self._handle.seek(self._data_start + start)
        if self._handle.readinto(buffer) != len(buffer):
            raise ModelFileError(self.path, "truncated", f"ends inside tensor {self.names[name]!r}")
        flat = torch.frombuffer(buffer, dtype=stored) if buffer else torch.empty(0, dtype=stored)
        tensor = flat.reshape(entry["shape"]).to(self._device)
        return tensor if dtype is None or tensor.dtype == dtype else tensor.to(dtype)

    def stream(self, names: list[str], dtype_of: Callable[[str], torch.dtype | None]) -> dict[str, torch.Tensor]:
        """``{name: tensor}`` for ``names``, each converted with ``dtype_of(name)`` as it is read."""
        return {name: self.read(name, dtype_of(name)) for name in names}


@contextmanager
def open_part(path: Path | str, prefix: str, device: torch.device | str = "cpu") -> Iterator[PartTensors]:
    """Open ``path`` (header validated first) and yield the tensors under ``prefix``, read onto ``device``.

    Raises:
        ModelFileError: the file is broken, or holds nothing under ``prefix``.
    """
    path = Path(path)
    header = read_safetensors_header(path)
    if not any(key.startswith(prefix) for key in header.tensors):
        raise ModelFileError(path, "incomplete", f"has no tensors under {prefix!r}")
    with path.open("rb") as handle:
        yield PartTensors(path, header, prefix, handle, device)
