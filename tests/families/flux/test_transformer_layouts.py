"""Recognising a FLUX.1 transformer in every layout from names and shapes, and the config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from gguf import GGMLQuantizationType

from modules.families.flux.transformer_keys import FluxTransformerConfig, axes_dims_for_head_dim
from modules.families.flux.transformer_layouts import FluxFileError, detect_flux_transformer
from tests.families.flux.tiny_flux import (
    COMFY_PREFIX,
    SCHNELL,
    full_size_bfl_shapes,
    write_flux_bfl_file,
    write_header_only_safetensors,
    write_tiny_flux,
)
from tests.families.flux.tiny_flux_gguf import write_flux_gguf_file

TINY_DEV_CONFIG = FluxTransformerConfig(
    num_layers=2, num_single_layers=2, attention_head_dim=32, num_attention_heads=2, in_channels=64,
    out_channels=64, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
    axes_dims_rope=(4, 14, 14))


LAYOUTS = {  # write_tiny_flux layout -> (detected layout, prefix)
    "bfl": ("bfl", ""), "comfy": ("bfl", COMFY_PREFIX), "diffusion_model": ("bfl", "diffusion_model."),
    "diffusers_file": ("diffusers", ""), "diffusers_folder": ("diffusers", ""),
    "transformer_subfolder": ("diffusers", ""), "gguf": ("gguf", ""),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_is_recognised_with_its_prefix_and_config(layout: str, tmp_path: Path) -> None:
    found = detect_flux_transformer(write_tiny_flux(layout, tmp_path))
    assert found is not None
    assert (found.layout, found.prefix) == LAYOUTS[layout]
    assert found.variant == "dev" and found.guidance_distilled
    assert found.config == TINY_DEV_CONFIG
    # only the transformer's own tensors, unprefixed (an all-in-one file's VAE is not among them)
    assert "img_in.weight" in found.tensors or "x_embedder.weight" in found.tensors
    assert not any(name.startswith(("vae.", "text_encoders.", COMFY_PREFIX)) for name in found.tensors)


def test_a_sharded_diffusers_folder_lists_every_shard(tmp_path: Path) -> None:
    found = detect_flux_transformer(write_tiny_flux("transformer_subfolder", tmp_path))
    assert found is not None and len(found.files) > 1
    assert all(f.name.startswith("diffusion_pytorch_model-") for f in found.files)


@pytest.mark.parametrize("layout", ["bfl", "diffusers_file", "diffusers_folder", "gguf"])
def test_schnell_is_told_from_dev_by_its_missing_guidance_embedder(layout: str, tmp_path: Path) -> None:
    found = detect_flux_transformer(write_tiny_flux(layout, tmp_path, SCHNELL))
    assert found is not None
    assert found.variant == "schnell" and not found.config.guidance_embeds


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"dtype": torch.bfloat16}, "BF16"), ({"dtype": torch.float16}, "F16"),
    ({"dtype": torch.bfloat16, "fp8": torch.float8_e4m3fn}, "F8_E4M3"),
    ({"dtype": torch.bfloat16, "fp8": torch.float8_e5m2}, "F8_E5M2"),
])
def test_storage_dtype_is_the_one_holding_most_weights(kwargs: dict, expected: str, tmp_path: Path) -> None:
    found = detect_flux_transformer(write_flux_bfl_file(tmp_path / "f.safetensors", **kwargs))
    assert found is not None and found.storage_dtype == expected


def test_gguf_storage_dtype_is_its_quantization(tmp_path: Path) -> None:
    found = detect_flux_transformer(write_flux_gguf_file(tmp_path / "f.gguf", GGMLQuantizationType.Q5_0))
    assert found is not None and found.storage_dtype == "Q5_0"
    assert found.tensors["double_blocks.0.img_attn.qkv.weight"].shape == (3 * 64, 64)  # logical, not bytes


def test_an_explicit_prefix_is_the_only_one_looked_under(tmp_path: Path) -> None:
    path = write_tiny_flux("comfy", tmp_path)
    assert detect_flux_transformer(path, prefix=COMFY_PREFIX).prefix == COMFY_PREFIX
    assert detect_flux_transformer(path, prefix="") is None


@pytest.mark.parametrize("guidance", [True, False])
def test_full_size_flux1_config_comes_from_shapes_alone(guidance: bool, tmp_path: Path) -> None:
    """A 24 GB-sized header (sparse file) gives FLUX.1-dev's / schnell's real config offline."""
    path = write_header_only_safetensors(tmp_path / "flux1.safetensors", full_size_bfl_shapes(guidance),
                                         prefix=COMFY_PREFIX)
    found = detect_flux_transformer(path)
    assert found is not None and found.variant == ("dev" if guidance else "schnell")
    assert found.config == FluxTransformerConfig(
        num_layers=19, num_single_layers=38, attention_head_dim=128, num_attention_heads=24, in_channels=64,
        out_channels=64, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=guidance,
        axes_dims_rope=(16, 56, 56))


@pytest.mark.parametrize(("head_dim", "axes"), [(128, (16, 56, 56)), (64, (8, 28, 28)), (32, (4, 14, 14)),
                                                (24, (4, 10, 10)), (16, (4, 6, 6)), (8, (4, 2, 2))])
def test_rotary_axes_keep_flux_proportions_and_sum_to_the_head_width(head_dim: int, axes: tuple) -> None:
    assert axes_dims_for_head_dim(head_dim) == axes
    assert sum(axes) == head_dim and all(a % 2 == 0 for a in axes)


def test_an_odd_head_width_is_refused() -> None:
    with pytest.raises(ValueError, match="rotary"):
        axes_dims_for_head_dim(30 + 1)


def test_a_variant_beside_the_weights_in_a_diffusers_folder_is_not_read_too(tmp_path: Path) -> None:
    """diffusers folders may hold diffusion_pytorch_model.fp16.safetensors beside the main file."""
    folder = write_tiny_flux("diffusers_folder", tmp_path)
    transformer = folder / "transformer"
    (transformer / "diffusion_pytorch_model.fp16.safetensors").write_bytes(
        (transformer / "diffusion_pytorch_model.safetensors").read_bytes())
    found = detect_flux_transformer(folder)
    assert [f.name for f in found.files] == ["diffusion_pytorch_model.safetensors"]


def test_a_sharded_folder_reads_the_shards_its_index_lists(tmp_path: Path) -> None:
    transformer = write_tiny_flux("transformer_subfolder", tmp_path)
    index = json.loads((transformer / "diffusion_pytorch_model.safetensors.index.json").read_text())
    assert {f.name for f in detect_flux_transformer(transformer).files} == set(index["weight_map"].values())
    (transformer / "diffusion_pytorch_model.safetensors.index.json").write_text("{not json")
    with pytest.raises(FluxFileError) as caught:
        detect_flux_transformer(transformer)
    assert caught.value.kind == "corrupt"
