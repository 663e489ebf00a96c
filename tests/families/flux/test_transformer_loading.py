"""Loading a FLUX.1 transformer from each layout gives the reference model's output."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

from modules.families.flux.transformer import bfl_to_diffusers, load_flux_transformer
from modules.families.flux.transformer_layouts import detect_flux_transformer
from tests.families.flux.tiny_flux import (
    DEV,
    SCHNELL,
    build_tiny_flux,
    full_size_bfl_shapes,
    run_tiny_flux,
    tiny_flux_inputs,
    write_flux_bfl_file,
    write_header_only_safetensors,
    write_tiny_flux,
)


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    """The tiny dev and schnell reference outputs, from diffusers-built models."""
    return {name: run_tiny_flux(build_tiny_flux(spec), tiny_flux_inputs(spec))
            for name, spec in (("dev", DEV), ("schnell", SCHNELL))}


@pytest.mark.parametrize("layout", ["bfl", "comfy", "diffusion_model", "diffusers_file", "diffusers_folder",
                                    "transformer_subfolder"])
@pytest.mark.parametrize("variant", ["dev", "schnell"])
def test_each_layout_loads_to_the_reference_models_output(layout: str, variant: str, reference,
                                                          tmp_path: Path) -> None:
    spec = DEV if variant == "dev" else SCHNELL
    model = load_flux_transformer(write_tiny_flux(layout, tmp_path, spec))
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in model.parameters())
    torch.testing.assert_close(run_tiny_flux(model, tiny_flux_inputs(spec)), reference[variant], rtol=0, atol=1e-6)


def test_fused_bfl_tensors_become_views_of_one_buffer(tmp_path: Path) -> None:
    """Splitting q/k/v and linear1 copies nothing: the parts share the tensor read from the file."""
    model = load_flux_transformer(write_flux_bfl_file(tmp_path / "f.safetensors"))
    double, single = model.transformer_blocks[0].attn, model.single_transformer_blocks[0]
    storage = double.to_q.weight.untyped_storage().data_ptr()
    assert double.to_k.weight.untyped_storage().data_ptr() == storage
    assert double.to_v.weight.untyped_storage().data_ptr() == storage
    assert single.proj_mlp.weight.untyped_storage().data_ptr() == single.attn.to_q.weight.untyped_storage().data_ptr()


def test_a_bf16_file_stays_bf16_unless_a_dtype_is_asked_for(reference, tmp_path: Path) -> None:
    path = write_flux_bfl_file(tmp_path / "f.safetensors", dtype=torch.bfloat16)
    assert {p.dtype for p in load_flux_transformer(path).parameters()} == {torch.bfloat16}
    model = load_flux_transformer(path, dtype=torch.float32)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    output = run_tiny_flux(model, tiny_flux_inputs())
    assert (output - reference["dev"]).abs().max() < 0.05 * reference["dev"].abs().max()


@pytest.mark.parametrize("guidance", [True, False])
def test_our_key_map_matches_diffusers_converter_at_full_size(guidance: bool, tmp_path: Path) -> None:
    """Same names and shapes as diffusers' own BFL converter on FLUX.1's real (meta) shapes."""
    shapes = full_size_bfl_shapes(guidance, num_layers=2, num_single_layers=2)
    found = detect_flux_transformer(write_header_only_safetensors(tmp_path / "f.safetensors", shapes))
    ours = bfl_to_diffusers(shapes, found)
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(shapes))
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


def test_final_modulation_halves_are_swapped_to_diffusers_order(tmp_path: Path) -> None:
    """BFL's final layer reads (shift, scale); diffusers' AdaLayerNormContinuous (scale, shift)."""
    path = write_flux_bfl_file(tmp_path / "f.safetensors")
    found = detect_flux_transformer(path)
    weight = torch.arange(2 * 64 * 64, dtype=torch.float32).reshape(128, 64)
    state = {name: torch.zeros(info.shape) for name, info in found.tensors.items()}
    state["final_layer.adaLN_modulation.1.weight"] = weight
    converted = bfl_to_diffusers(state, found)["norm_out.linear.weight"]
    torch.testing.assert_close(converted, torch.cat([weight[64:], weight[:64]]))
