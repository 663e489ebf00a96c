"""fp8 FLUX.1 files stay fp8 in memory and compute in a wider dtype with the same values."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modules.families.flux.transformer import load_flux_transformer
from tests.families.flux.tiny_flux import (
    build_tiny_flux,
    fp8_rounded,
    run_tiny_flux,
    save_bfl_state,
    tiny_flux_bfl_state_dict,
    tiny_flux_inputs,
    write_flux_bfl_file,
)

FP8 = [torch.float8_e4m3fn, torch.float8_e5m2]


def _rounded_reference(folder: Path, fp8: torch.dtype, dtype: torch.dtype) -> torch.Tensor:
    """The output of the fp8 values held in full precision (a float32 BFL file, loaded in ``dtype``)."""
    path = save_bfl_state(folder / "rounded.safetensors", fp8_rounded(tiny_flux_bfl_state_dict(), fp8))
    return run_tiny_flux(load_flux_transformer(path, dtype=dtype), tiny_flux_inputs(), dtype)


@pytest.mark.parametrize("fp8", FP8)
def test_fp8_weights_stay_fp8_and_compute_in_float32_like_full_precision(fp8: torch.dtype, tmp_path: Path) -> None:
    model = load_flux_transformer(write_flux_bfl_file(tmp_path / "f8.safetensors", fp8=fp8), dtype=torch.float32)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m.weight.dtype == fp8 for m in linears)
    norm = model.transformer_blocks[0].attn.norm_q.weight
    assert norm.dtype == torch.float32  # norm scales the file keeps wide are computed wide
    output = run_tiny_flux(model, tiny_flux_inputs())
    assert all(m.weight.dtype == fp8 for m in linears)  # cast back after each layer's forward
    torch.testing.assert_close(output, _rounded_reference(tmp_path, fp8, torch.float32), rtol=0, atol=1e-5)
    # and close to the unrounded model: fp8 rounding is the only difference
    original = run_tiny_flux(build_tiny_flux(), tiny_flux_inputs())
    error = (output - original).abs().mean() / original.abs().mean()
    assert error < (0.1 if fp8 == torch.float8_e4m3fn else 0.2), error


@pytest.mark.parametrize("fp8", FP8)
def test_fp8_with_bf16_compute_matches_the_same_values_in_bf16(fp8: torch.dtype, tmp_path: Path) -> None:
    """The default compute dtype is bf16; fp8 values are exact in bf16, so the output is the one
    a bf16 model with those values gives (bf16's own error on FLUX is not the loader's)."""
    path = write_flux_bfl_file(tmp_path / "f8.safetensors", dtype=torch.bfloat16, fp8=fp8)
    model = load_flux_transformer(path)
    assert {p.dtype for p in model.parameters()} == {fp8, torch.bfloat16}
    output = run_tiny_flux(model, tiny_flux_inputs(), torch.bfloat16)
    reference = _rounded_reference(tmp_path, fp8, torch.bfloat16)
    assert (output - reference).abs().max() <= 0.02 * reference.abs().max()


def test_keep_fp8_false_upcasts_for_good(tmp_path: Path) -> None:
    """Upcast at load: the file's values exactly (biases the file keeps wide stay unrounded)."""
    fp8 = torch.float8_e4m3fn
    model = load_flux_transformer(write_flux_bfl_file(tmp_path / "f8.safetensors", fp8=fp8), dtype=torch.float32,
                                  keep_fp8=False)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    stored = {k: (v.to(fp8).float() if v.ndim == 2 else v) for k, v in tiny_flux_bfl_state_dict().items()}
    reference = load_flux_transformer(save_bfl_state(tmp_path / "stored.safetensors", stored))
    torch.testing.assert_close(run_tiny_flux(model, tiny_flux_inputs()), run_tiny_flux(reference, tiny_flux_inputs()),
                               rtol=0, atol=1e-6)
