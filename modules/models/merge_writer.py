"""Writing a safetensors file one tensor at a time, so a merge never holds a whole model.

``safetensors.torch.save_file`` takes a dict of every tensor, which for an SDXL merge means
about 7 GB of RAM on top of the inputs. The format is simple enough to stream
(https://github.com/huggingface/safetensors, "Format"):

    8 bytes     N, the header length, unsigned little-endian
    N bytes     JSON {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets"}},
                padded with spaces so the data starts 8-byte aligned
    rest        the tensors' raw little-endian bytes; data_offsets are [begin, end) in it

Every tensor's dtype and shape is known before it is computed, so the header goes first and
each tensor's bytes follow as they are produced. The file is written under a temporary name
beside the target and renamed into place only when complete, so an error never leaves a
half-written model where the checkpoint list would pick it up.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["FLOAT_DTYPES", "TORCH_DTYPES", "TensorSpec", "dtype_name", "write_safetensors"]

#: safetensors dtype name -> torch dtype (the names the format defines; unsigned types wider
#: than 8 bits exist in torch only as limited "shell" dtypes, so they are left out).
TORCH_DTYPES: Mapping[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
_NAMES = {dtype: name for name, dtype in TORCH_DTYPES.items()}
#: The floating-point dtype names: the tensors a merge interpolates and "save as float16" casts.
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})
_ALIGNMENT = 8


@dataclass(frozen=True)
class TensorSpec:
    """One output tensor as the header describes it.

    Attributes:
        name: the state-dict key.
        dtype: a safetensors dtype name, a key of :data:`TORCH_DTYPES` ("F16", "F32", "I64", ...).
        shape: the tensor's shape; ``()`` for a scalar.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        """Size of the tensor's data in bytes (element count x element size)."""
        return math.prod(self.shape) * TORCH_DTYPES[self.dtype].itemsize


def dtype_name(dtype: torch.dtype) -> str:
    """The safetensors name of a torch dtype ("F32" for ``torch.float32``).

    Raises:
        ValueError: the dtype has no safetensors name (complex, quantised, unsigned > 8 bit).
    """
    if dtype not in _NAMES:
        raise ValueError(f"{dtype} cannot be stored in a safetensors file")
    return _NAMES[dtype]


def _data_order(specs: Sequence[TensorSpec]) -> list[TensorSpec]:
    """Widest element type first (stable otherwise), as safetensors' own writer does: with an
    8-byte aligned data start, every tensor then starts at a multiple of its element size,
    which memory-mapping readers need to view the bytes in place."""
    return sorted(specs, key=lambda spec: -TORCH_DTYPES[spec.dtype].itemsize)


def _header_bytes(ordered: Sequence[TensorSpec], metadata: Mapping[str, str]) -> bytes:
    """The 8-byte length plus the space-padded JSON header for tensors laid out in ``ordered``."""
    header: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for spec in ordered:
        header[spec.name] = {"dtype": spec.dtype, "shape": list(spec.shape),
                             "data_offsets": [offset, offset + spec.nbytes]}
        offset += spec.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % _ALIGNMENT)
    return len(text).to_bytes(8, "little") + text


def _check_tensor(spec: TensorSpec, tensor: torch.Tensor) -> None:
    """Guard against a producer that disagrees with the header it promised; a mismatch would
    shift every later tensor and silently corrupt the file."""
    if tensor.dtype != TORCH_DTYPES[spec.dtype] or tuple(tensor.shape) != spec.shape:
        raise ValueError(f"tensor {spec.name!r} is {tensor.dtype} {tuple(tensor.shape)}, but the header "
                         f"declares {spec.dtype} {spec.shape}")


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The raw bytes of ``tensor`` in row-major order (bfloat16 and float8 included, which numpy
    cannot represent, hence the byte view taken in torch)."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


def write_safetensors(
    path: Path,
    specs: Sequence[TensorSpec],
    produce: Callable[[TensorSpec], torch.Tensor],
    metadata: Mapping[str, str] | None = None,
    on_written: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a safetensors file, asking ``produce`` for one tensor at a time.

    Only the tensor being written is alive at once. ``produce`` is called exactly once per
    spec, in the file's data order (widest dtype first), and must return a tensor of exactly
    that spec's dtype and shape. ``on_written(done, total)`` runs after each tensor reaches
    the file; anything either callback raises aborts the write.

    Args:
        path: target file; its folder is created. An existing file is replaced only on success.
        specs: the tensors, with unique names.
        produce: returns the tensor for a spec.
        metadata: ``__metadata__`` string pairs (omitted from the header when empty).
        on_written: progress callback, ``done`` counting 1..``total``.

    Returns:
        ``path``.

    Raises:
        ValueError: duplicate names, or a produced tensor that does not match its spec.
    """
    if sys.byteorder != "little":  # the format is little-endian; we copy memory as-is
        raise RuntimeError("writing safetensors needs a little-endian machine")
    if len({spec.name for spec in specs}) != len(specs):
        raise ValueError("tensor names must be unique")
    ordered = _data_order(specs)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Hidden, unique name in the target folder (same file system, so the rename is atomic);
    # os.open with 0o666 lets the umask set the final permissions, unlike mkstemp's 0o600.
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(_header_bytes(ordered, metadata or {}))
            for done, spec in enumerate(ordered, start=1):
                tensor = produce(spec)
                _check_tensor(spec, tensor)
                handle.write(_tensor_bytes(tensor))
                del tensor  # drop it before producing the next one
                if on_written is not None:
                    on_written(done, len(ordered))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path
