"""Loading a FLUX.1 transformer into diffusers' ``FluxTransformer2DModel``, streaming, offline.

Memory: the model is built on the meta device (no weights allocated), each tensor is read from
the file straight into its own buffer with plain file reads (no memory map left resident, no
second copy), BFL's fused tensors are split into row views, and the buffers are assigned to the
model as its parameters. Peak host RAM is about one file size (bench/flux_load_memory.py).

fp8 files (float8_e4m3fn / float8_e5m2) stay fp8 in memory: each linear layer whose weight the
file stores in fp8 gets diffusers' layerwise-casting hook, which upcasts it to the compute dtype
for its forward and back after. Everything else (norm scales, layers the file keeps wider) is
held in the compute dtype.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from modules.families.flux.transformer_keys import bfl_key_rules
from modules.families.flux.transformer_layouts import (
    DIFFUSERS,
    GGUF,
    FluxFileError,
    FluxTransformerFile,
    TensorInfo,
    describe_non_flux,
    detect_flux_transformer,
    read_exactly,
    read_tensor_table,
)

if TYPE_CHECKING:
    from diffusers import FluxTransformer2DModel

__all__ = ["FP8_DTYPES", "SAFETENSORS_DTYPES", "bfl_to_diffusers", "load_flux_transformer", "resolve_flux_transformer"]

#: safetensors dtype names we load, and their PyTorch dtypes.
SAFETENSORS_DTYPES = {
    "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}
FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
#: What fp8 and GGUF weights compute in unless told otherwise.
DEFAULT_COMPUTE_DTYPE = torch.bfloat16


def resolve_flux_transformer(source: FluxTransformerFile | Path | str,
                             prefix: str | None = None) -> FluxTransformerFile:
    """``source`` recognised as a FLUX.1 transformer, or a ``FluxFileError`` saying what it is.

    Raises:
        FluxFileError: kind "lora", "vae", "not_flux", or any ``detect_flux_transformer`` error.
    """
    if isinstance(source, FluxTransformerFile):
        return source
    found = detect_flux_transformer(source, prefix)
    if found is None:
        raise describe_non_flux(Path(source), read_tensor_table(Path(source)))
    return found


def load_flux_transformer(source: FluxTransformerFile | Path | str, *, dtype: torch.dtype | None = None,
                          keep_fp8: bool = True, prefix: str | None = None) -> FluxTransformer2DModel:
    """A ``FluxTransformer2DModel`` on the CPU, in eval mode, from any FLUX.1 transformer layout.

    Args:
        source: a file or folder (see ``detect_flux_transformer``) or what it returned.
        dtype: the dtype the model computes in. Unquantized files: their tensors are cast to it
            (None keeps the file's dtype). fp8 and GGUF files: their weights stay fp8/quantized
            and are upcast to it layer by layer (None: bfloat16; use float32 on a CPU).
        keep_fp8: False upcasts fp8 weights to ``dtype`` for good (more memory, no casting hooks).
        prefix: only for files holding several models under prefixes we do not know.

    Raises:
        FluxFileError: the file is not a FLUX.1 transformer, is incomplete, truncated or corrupt.
    """
    from diffusers import FluxTransformer2DModel

    file = resolve_flux_transformer(source, prefix)
    has_fp8 = any(SAFETENSORS_DTYPES.get(info.dtype) in FP8_DTYPES for info in file.tensors.values())
    compute = dtype or (DEFAULT_COMPUTE_DTYPE if has_fp8 or file.layout == GGUF else None)
    state = _read_state(file, compute, keep_fp8)
    if file.layout != DIFFUSERS:
        state = bfl_to_diffusers(state, file)
    if file.layout == GGUF:
        from modules.families.flux.gguf_loading import load_gguf_transformer

        return load_gguf_transformer(file, state, compute)
    with torch.device("meta"):
        model = FluxTransformer2DModel(**file.config.diffusers_kwargs())
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:  # shape mismatches: the file's tensors disagree with each other
        raise FluxFileError(file.path, "unsupported", f"has tensors whose shapes do not fit one FLUX.1 "
                            f"transformer: {str(error).splitlines()[-1].strip()}") from None
    if has_fp8 and keep_fp8:
        _hook_fp8_layers(model, compute)
    return model.requires_grad_(False).eval()


def _cast(tensor: torch.Tensor, dtype: torch.dtype, keep_fp8: bool) -> torch.Tensor:
    if tensor.dtype == dtype or (keep_fp8 and tensor.dtype in FP8_DTYPES):
        return tensor
    return tensor.to(dtype)


def _hook_fp8_layers(model: torch.nn.Module, compute_dtype: torch.dtype) -> None:
    """Layerwise casting on the linear layers the file stores in fp8; every other fp8 tensor
    (a norm scale, a bias of a wider layer) is upcast now, as nothing would upcast it later."""
    from diffusers.hooks import apply_layerwise_casting_hook

    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, torch.nn.Linear) and weight is not None and weight.dtype in FP8_DTYPES:
            apply_layerwise_casting_hook(module, weight.dtype, compute_dtype, non_blocking=False)
            continue
        for name, param in list(module.named_parameters(recurse=False)):
            if param.dtype in FP8_DTYPES:
                setattr(module, name, torch.nn.Parameter(param.to(compute_dtype), requires_grad=False))


def bfl_to_diffusers(state: Mapping[str, torch.Tensor], file: FluxTransformerFile) -> dict[str, torch.Tensor]:
    """BFL-named tensors (unprefixed) -> diffusers names, fused ones split into row views.

    Raises:
        FluxFileError: a fused tensor is not as wide as its parts (a model FLUX.1 is not).
    """
    converted = {}
    for rule in bfl_key_rules(file.config):
        tensor = state[rule.source]
        if rule.rows is not None:
            if tensor.shape[0] < rule.rows[1]:
                raise FluxFileError(file.path, "unsupported", f"has {rule.source!r} {tensor.shape[0]} rows "
                                    f"wide; FLUX.1 with hidden width {file.config.inner_dim} needs {rule.rows[1]}")
            tensor = tensor[rule.rows[0]:rule.rows[1]]
        elif rule.swap_halves:
            shift, scale = tensor.chunk(2, dim=0)
            tensor = torch.cat([scale, shift], dim=0)
        converted[rule.target] = tensor
    return converted


def _read_state(file: FluxTransformerFile, dtype: torch.dtype | None, keep_fp8: bool) -> dict[str, torch.Tensor]:
    """The transformer's tensors, unprefixed, in the file's names. safetensors tensors are cast
    to ``dtype`` (fp8 ones only if not ``keep_fp8``) one by one as they are read, so a cast
    holds one tensor twice, never the file; GGUF tensors stay as stored."""
    if file.layout == GGUF:
        from modules.families.flux.gguf_loading import read_gguf_tensors

        return read_gguf_tensors(file.files[0], file.prefix)
    state: dict[str, torch.Tensor] = {}
    for path in file.files:
        for name, tensor in _read_safetensors(path, file.prefix, file.tensors):
            state[name] = tensor if dtype is None else _cast(tensor, dtype, keep_fp8)
    return state


def _read_safetensors(path: Path, prefix: str,
                      wanted: Mapping[str, TensorInfo]) -> Iterator[tuple[str, torch.Tensor]]:
    """(unprefixed name, tensor) for each tensor ``wanted`` places in ``path``, in file order, one
    plain file read per tensor into a fresh buffer (the safetensors layout: 8-byte little-endian
    header length, JSON header, then each tensor's bytes at ``data_offsets`` past the header)."""
    from modules.models.files import read_safetensors_header

    header = read_safetensors_header(path)  # validated: every range lies inside the file
    with path.open("rb", buffering=0) as handle:
        (header_len,) = struct.unpack("<Q", handle.read(8))
        entries = sorted(((name, entry) for name, entry in header.tensors.items()
                          if name.startswith(prefix) and (info := wanted.get(name[len(prefix):])) is not None
                          and info.file == path),
                         key=lambda item: item[1]["data_offsets"][0])
        for name, entry in entries:
            dtype = SAFETENSORS_DTYPES.get(entry["dtype"])
            if dtype is None:
                raise FluxFileError(path, "unsupported", f"stores {name!r} as {entry['dtype']}; FLUX.1 weights "
                                    f"load from {', '.join(SAFETENSORS_DTYPES)}")
            start, stop = entry["data_offsets"]
            raw = torch.empty(stop - start, dtype=torch.uint8)
            handle.seek(8 + header_len + start)
            read_exactly(path, handle, raw, name)
            yield name[len(prefix):], raw.view(dtype).reshape(entry["shape"])

