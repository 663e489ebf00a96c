"""GGUF-quantized FLUX.1 transformers (city96's conversions: Q8_0, Q5_K, Q4_K, ...) via diffusers.

GGUF (github.com/ggml-org/ggml, docs/gguf.md) stores each tensor's dims innermost-first and
quantized tensors as rows of fixed-size blocks; the names inside FLUX GGUF files are BFL's.
We read the table with the ``gguf`` package's ``GGUFReader`` (it memory-maps the file but we
touch only the header), then read each tensor's bytes with plain file reads, so host RAM holds
one copy of the file and nothing more. Quantized linear weights stay quantized in memory as
diffusers' ``GGUFParameter`` and are dequantized per layer at compute time by diffusers' GGUF
quantizer (``GGUFQuantizationConfig``).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch

from modules.families.flux.transformer_layouts import (
    FluxFileError,
    FluxTransformerFile,
    TensorInfo,
    read_exactly,
)

if TYPE_CHECKING:
    from diffusers import FluxTransformer2DModel

__all__ = ["load_gguf_transformer", "read_gguf_table"]

# GGUF types that are plain PyTorch dtypes; everything else is kept quantized.
_PLAIN = {"F32": torch.float32, "F16": torch.float16}
_GGUF_MAGIC = b"GGUF"


class _GGUFEntry(NamedTuple):
    name: str
    type_name: str
    type_id: int
    byte_shape: tuple[int, ...]  # numpy/PyTorch order; quantized: rows x bytes per row
    offset: int
    n_bytes: int


def _entries(path: Path) -> list[_GGUFEntry]:
    """Every tensor's name, type and byte range, from the header only.

    Raises:
        FluxFileError: not a GGUF file, a corrupt table, or a tensor past the end of the file.
    """
    import gguf

    try:
        size = path.stat().st_size
        reader = gguf.GGUFReader(path)
        entries = [_GGUFEntry(t.name, t.tensor_type.name, int(t.tensor_type), tuple(t.data.shape),
                              t.data_offset, t.n_bytes) for t in reader.tensors]
    except FileNotFoundError:
        raise FluxFileError(path, "missing", "does not exist") from None
    except (ValueError, IndexError, KeyError, TypeError, OverflowError):  # gguf-py's ways to report a bad file
        # Classified by what the file holds, not by gguf-py's wording: with GGUF's magic at the
        # start, a table that does not parse is most likely a cut download.
        with path.open("rb") as handle:
            kind = "truncated" if handle.read(4) == _GGUF_MAGIC else "corrupt"
        what = "cut short" if kind == "truncated" else "no GGUF header"
        raise FluxFileError(path, kind, f"is not a readable GGUF file ({what}); re-download it") from None
    finally:
        reader = None  # drop the memory map
    for entry in entries:
        if entry.offset + entry.n_bytes > size:
            raise FluxFileError(path, "truncated", f"is truncated: tensor {entry.name!r} ends past the "
                                f"file's {size} bytes; re-download it")
    return entries


def read_gguf_table(path: Path) -> dict[str, TensorInfo]:
    """Name -> logical shape and GGUF type name for every tensor in a .gguf file (no data read)."""
    from gguf import GGMLQuantizationType
    from gguf.quants import quant_shape_from_byte_shape

    table = {}
    for entry in _entries(path):
        if entry.type_name in _PLAIN:
            shape = entry.byte_shape
        else:
            shape = tuple(quant_shape_from_byte_shape(entry.byte_shape, GGMLQuantizationType(entry.type_id)))
        table[entry.name] = TensorInfo(tuple(int(d) for d in shape), entry.type_name, path)
    return table


def _check_supported(path: Path, entries: list[_GGUFEntry]) -> None:
    from diffusers.quantizers.gguf.utils import SUPPORTED_GGUF_QUANT_TYPES

    supported = {int(t) for t in SUPPORTED_GGUF_QUANT_TYPES} | {0, 1}  # F32, F16
    for entry in entries:
        if entry.type_id not in supported:
            names = ", ".join(sorted(t.name for t in SUPPORTED_GGUF_QUANT_TYPES))
            raise FluxFileError(path, "unsupported", f"stores {entry.name!r} as GGUF type {entry.type_name}, "
                                f"which diffusers cannot compute with; use a file quantized as one of {names}")


def read_gguf_tensors(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor under ``prefix`` (prefix removed): F32/F16 as plain tensors, the rest as
    diffusers ``GGUFParameter`` (uint8 rows of quantized blocks). 1-d quantized tensors (rare:
    a bias or norm scale) are dequantized here, as diffusers' linear layers only take quantized
    weights. One file read per tensor into its own buffer: no memory map stays resident."""
    import gguf
    from diffusers.quantizers.gguf.utils import GGUFParameter

    entries = [e for e in _entries(path) if e.name.startswith(prefix)]
    _check_supported(path, entries)
    tensors: dict[str, torch.Tensor] = {}
    with path.open("rb", buffering=0) as handle:
        for entry in sorted(entries, key=lambda e: e.offset):
            raw = torch.empty(entry.n_bytes, dtype=torch.uint8)
            handle.seek(entry.offset)
            read_exactly(path, handle, raw, entry.name)
            name = entry.name[len(prefix):]
            if entry.type_name in _PLAIN:
                tensors[name] = raw.view(_PLAIN[entry.type_name]).reshape(entry.byte_shape)
            elif len(entry.byte_shape) == 1:
                values = gguf.quants.dequantize(raw.numpy(), gguf.GGMLQuantizationType(entry.type_id))
                tensors[name] = torch.from_numpy(values.copy())
            else:
                tensors[name] = GGUFParameter(raw.reshape(entry.byte_shape), quant_type=entry.type_id)
    return tensors


def load_gguf_transformer(file: FluxTransformerFile, state: Mapping[str, torch.Tensor],
                          compute_dtype: torch.dtype) -> FluxTransformer2DModel:
    """A ``FluxTransformer2DModel`` holding ``state`` (diffusers names, GGUF tensors) quantized,
    computing in ``compute_dtype``, through diffusers' public single-file + GGUF quantizer path.

    The config is the one read from the shapes, handed to diffusers as a config folder in a temp
    directory (its ``from_single_file`` reads configs only from a folder or the hub).
    """
    from diffusers import FluxTransformer2DModel, GGUFQuantizationConfig

    config = {"_class_name": "FluxTransformer2DModel", **file.config.diffusers_kwargs()}
    config["axes_dims_rope"] = list(config["axes_dims_rope"])
    with tempfile.TemporaryDirectory(prefix="flux-config-") as folder:
        (Path(folder) / "config.json").write_text(json.dumps(config), encoding="utf-8")
        model = FluxTransformer2DModel.from_single_file(
            dict(state), config=folder, local_files_only=True, torch_dtype=compute_dtype,
            quantization_config=GGUFQuantizationConfig(compute_dtype=compute_dtype))
    return model.eval()
