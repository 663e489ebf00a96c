"""GGUF FLUX.1 files load through diffusers' GGUF quantizer, stay quantized, and compute the
dequantized values."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers.quantizers.gguf.utils import GGUFParameter
from gguf import GGMLQuantizationType

from modules.families.flux.transformer import load_flux_transformer
from tests.families.flux.tiny_flux import (
    COMFY_PREFIX,
    SCHNELL,
    build_tiny_flux,
    run_tiny_flux,
    save_bfl_state,
    tiny_flux_inputs,
)
from tests.families.flux.tiny_flux_gguf import (
    K_QUANT_HALF_FIELDS,
    dequantized_gguf_state,
    gguf_quantizable_types,
    write_flux_gguf_file,
)

WRITABLE = gguf_quantizable_types()
K_QUANTS = sorted(K_QUANT_HALF_FIELDS, key=lambda t: t.name)
# diffusers dequantizes in float16 (the blocks' scales are fp16), so outputs differ from
# gguf-py's float32 dequantization by fp16 rounding, ~1e-3 of their size.
DEQUANT_TOLERANCE = 3e-3


def _compare_with_dequantized(path: Path, folder: Path, spec=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(GGUF model output, output of the same values dequantized by gguf-py in a float32 BFL file)."""
    kwargs = {} if spec is None else {"spec": spec}
    inputs = tiny_flux_inputs(**kwargs)
    model = load_flux_transformer(path, dtype=torch.float32)
    reference_file = save_bfl_state(folder / "dequantized.safetensors", dequantized_gguf_state(path))
    return run_tiny_flux(model, inputs), run_tiny_flux(load_flux_transformer(reference_file), inputs)


def test_gguf_py_writes_the_legacy_quants_and_bf16() -> None:
    """What the tests below cover by quantizing; the K-quants are covered by raw blocks."""
    names = {t.name for t in WRITABLE}
    assert {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"} <= names
    assert not names & {t.name for t in K_QUANTS}


@pytest.mark.parametrize("qtype", WRITABLE, ids=lambda t: t.name)
def test_quantized_gguf_computes_its_dequantized_values(qtype: GGMLQuantizationType, tmp_path: Path) -> None:
    path = write_flux_gguf_file(tmp_path / f"flux-{qtype.name}.gguf", qtype)
    output, reference = _compare_with_dequantized(path, tmp_path)
    assert (output - reference).abs().max() <= DEQUANT_TOLERANCE * reference.abs().max()


@pytest.mark.parametrize("qtype", K_QUANTS, ids=lambda t: t.name)
def test_k_quant_gguf_computes_its_dequantized_values(qtype: GGMLQuantizationType, tmp_path: Path) -> None:
    path = write_flux_gguf_file(tmp_path / f"flux-{qtype.name}.gguf", qtype)
    model = load_flux_transformer(path, dtype=torch.float32)
    weight = model.transformer_blocks[0].ff.net[2].weight  # 256 wide: K-quantized in the tiny model
    assert isinstance(weight, GGUFParameter) and weight.quant_type == qtype
    output, reference = _compare_with_dequantized(path, tmp_path)
    assert (output - reference).abs().max() <= DEQUANT_TOLERANCE * reference.abs().max()


def test_q8_0_stays_quantized_and_is_close_to_the_unquantized_model(tmp_path: Path) -> None:
    path = write_flux_gguf_file(tmp_path / "flux-Q8_0.gguf", GGMLQuantizationType.Q8_0)
    model = load_flux_transformer(path, dtype=torch.float32)
    qkv = model.transformer_blocks[0].attn.to_q.weight
    assert isinstance(qkv, GGUFParameter) and qkv.dtype == torch.uint8  # blocks in memory, not floats
    output = run_tiny_flux(model, tiny_flux_inputs())
    original = run_tiny_flux(build_tiny_flux(), tiny_flux_inputs())
    assert (output - original).abs().mean() < 0.02 * original.abs().mean()


def test_a_prefixed_schnell_gguf_loads(tmp_path: Path) -> None:
    path = write_flux_gguf_file(tmp_path / "flux-schnell.gguf", GGMLQuantizationType.Q5_0, SCHNELL,
                                prefix=COMFY_PREFIX)
    output, reference = _compare_with_dequantized(path, tmp_path, SCHNELL)
    assert (output - reference).abs().max() <= DEQUANT_TOLERANCE * reference.abs().max()


def test_bf16_compute_is_the_default(tmp_path: Path) -> None:
    model = load_flux_transformer(write_flux_gguf_file(tmp_path / "f.gguf", GGMLQuantizationType.Q8_0))
    assert model.x_embedder.weight.dtype in (torch.bfloat16, torch.uint8)
    assert model.transformer_blocks[0].attn.norm_q.weight.dtype == torch.bfloat16
    assert torch.isfinite(run_tiny_flux(model, tiny_flux_inputs(), torch.bfloat16)).all()
