"""Tiny FLUX.1 transformers as GGUF files (BFL names, as city96's FLUX conversions).

Not a test module: ``from tests.families.flux.tiny_flux_gguf import write_flux_gguf_file``.

gguf-py (the ``gguf`` package) can quantize the legacy block types (Q4_0, Q4_1, Q5_0, Q5_1,
Q8_0) and BF16, but not the K-quants (Q2_K..Q6_K: it only dequantizes those). For K-quants we
write random blocks instead, with their fp16 scale fields set to small finite values, and the
reference is what gguf-py's own dequantizer makes of those bytes (``dequantized_gguf_state``).

As real quantizers do, a 2-d weight whose rows are not a whole number of blocks (32 values for
legacy types, 256 for K-quants) is stored F16, and 1-d tensors (biases, norm scales) F32. In the
tiny model K-quants therefore cover only the layers 256 (or 4x64) wide: the MLP outputs and the
timestep/guidance input layers.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType

from tests.families.flux.tiny_flux import DEV, TinyFlux, tiny_flux_bfl_state_dict

#: Byte offsets of the fp16 scale fields (d, dmin) in one block of each K-quant type, from
#: gguf-py's dequantizers (``gguf/quants.py``) and ggml's ``block_q*_K`` structs.
K_QUANT_HALF_FIELDS = {
    GGMLQuantizationType.Q2_K: (80, 82),
    GGMLQuantizationType.Q3_K: (108,),
    GGMLQuantizationType.Q4_K: (0, 2),
    GGMLQuantizationType.Q5_K: (0, 2),
    GGMLQuantizationType.Q6_K: (208,),
}


def gguf_quantizable_types() -> list[GGMLQuantizationType]:
    """The quantized types gguf-py can write and diffusers can compute with."""
    from diffusers.quantizers.gguf.utils import SUPPORTED_GGUF_QUANT_TYPES

    found = []
    for qtype in SUPPORTED_GGUF_QUANT_TYPES:
        block, _ = gguf.GGML_QUANT_SIZES[qtype]
        try:
            gguf.quants.quantize(np.ones((1, block), dtype=np.float32), qtype)
        except NotImplementedError:
            continue
        found.append(qtype)
    return sorted(found, key=lambda t: t.name)


def random_k_quant_blocks(rows: int, columns: int, qtype: GGMLQuantizationType,
                          rng: np.random.Generator) -> np.ndarray:
    """Random K-quant data for a ``rows`` x ``columns`` weight: uint8 (rows, bytes per row),
    scale fields ~ U(0.5e-4, 2e-4) so dequantized weights stay around +-0.5."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    data = rng.integers(0, 256, size=(rows, columns // block, size), dtype=np.uint8)
    for offset in K_QUANT_HALF_FIELDS[qtype]:
        scales = rng.uniform(0.5e-4, 2e-4, size=(rows, columns // block)).astype(np.float16)
        data[:, :, offset:offset + 2] = scales.view(np.uint8).reshape(rows, columns // block, 2)
    return data.reshape(rows, -1)


def write_flux_gguf_file(path: Path, qtype: GGMLQuantizationType, spec: TinyFlux = DEV, seed: int = 0,
                         prefix: str = "") -> Path:
    """A .gguf file of the tiny model in BFL names, 2-d weights quantized as ``qtype`` where
    their rows fit whole blocks (K-quants: random blocks, see the module docstring)."""
    rng = np.random.default_rng(seed)
    block, _ = gguf.GGML_QUANT_SIZES[qtype]
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(path, arch="flux")
    for name, tensor in tiny_flux_bfl_state_dict(spec, seed).items():
        values = tensor.numpy()
        if values.ndim == 2 and values.shape[1] % block == 0:
            if qtype in K_QUANT_HALF_FIELDS:
                data = random_k_quant_blocks(values.shape[0], values.shape[1], qtype, rng)
            else:
                data = gguf.quants.quantize(values, qtype)
            writer.add_tensor(prefix + name, data, raw_dtype=qtype)
        else:
            writer.add_tensor(prefix + name, values.astype(np.float16 if values.ndim == 2 else np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def dequantized_gguf_state(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a .gguf file as float32 in PyTorch order, dequantized by gguf-py."""
    reader = gguf.GGUFReader(path)
    state = {t.name: torch.from_numpy(np.array(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32))
             for t in reader.tensors}
    del reader
    return state
