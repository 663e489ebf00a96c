"""Reading one part's tensors out of a safetensors file, one tensor at a time.

A FLUX part lives either in a file of its own (``clip_l.safetensors``: keys ``text_model.*``) or
under a prefix in a ComfyUI all-in-one checkpoint (``text_encoders.clip_l.transformer.*``,
``text_encoders.t5xxl.transformer.*``, ``vae.*``). The loaders here read only the header to
decide, then take the part's tensors one by one from the memory-mapped file, converting each to
its target dtype before the next, so host RAM never holds a second copy of the part.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from modules.models.files import ModelFileError, SafetensorsHeader, read_safetensors_header

__all__ = ["FP8_DTYPES", "PartTensors", "find_prefix", "open_part", "safetensors_dtype"]

#: safetensors dtype names of 8-bit float storage (ComfyUI's ``*_fp8_e4m3fn`` files).
FP8_DTYPES = {"F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}
_TORCH_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                 **FP8_DTYPES}


def safetensors_dtype(name: str) -> torch.dtype | None:
    """The torch dtype of a safetensors dtype name ("F16" -> float16); None for non-float ones."""
    return _TORCH_DTYPES.get(name)


def find_prefix(keys: Mapping[str, Any] | set[str], suffix: str) -> str | None:
    """The prefix under which ``suffix`` (a key every file of the part has) appears, shortest first.

    ``find_prefix(keys, "encoder.block.0.layer.0.SelfAttention.q.weight")`` is ``""`` for
    ``t5xxl_fp16.safetensors`` and ``"text_encoders.t5xxl.transformer."`` in an all-in-one file.
    """
    found = [key[: -len(suffix)] for key in keys if key.endswith(suffix)]
    found = [prefix for prefix in found if prefix == "" or prefix.endswith(".")]
    return min(found, key=len) if found else None


class PartTensors:
    """The tensors of one part (those under ``prefix``) of an open safetensors file.

    Attributes:
        header: the file's parsed header (names, shapes, dtypes).
        prefix: stripped from every name; ``names`` and ``shape`` use the stripped names.
    """

    def __init__(self, path: Path, header: SafetensorsHeader, prefix: str, handle: Any) -> None:
        self.path = path
        self.header = header
        self.prefix = prefix
        self._handle = handle
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
        """One tensor, converted to ``dtype`` (None keeps the stored dtype)."""
        tensor = self._handle.get_tensor(self.names[name])
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
    from safetensors import safe_open

    path = Path(path)
    header = read_safetensors_header(path)
    if not any(key.startswith(prefix) for key in header.tensors):
        raise ModelFileError(path, "incomplete", f"has no tensors under {prefix!r}")
    with safe_open(str(path), framework="pt", device=str(device)) as handle:
        yield PartTensors(path, header, prefix, handle)
