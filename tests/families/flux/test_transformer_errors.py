"""Files that are not a loadable FLUX.1 transformer fail with a typed error saying what to do."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, GGUFWriter
from safetensors.torch import save_file

from modules.families.flux.transformer import load_flux_transformer
from modules.families.flux.transformer_layouts import FluxFileError, detect_flux_transformer
from modules.models.files import ModelFileError
from tests.families.flux.tiny_flux import (
    DEV,
    TinyFlux,
    build_tiny_flux,
    save_bfl_state,
    tiny_flux_bfl_state_dict,
    write_flux_bfl_file,
)
from tests.families.flux.tiny_flux_gguf import write_flux_gguf_file


def _cut(path: Path, keep: float = 0.7) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _error(path: Path) -> FluxFileError:
    with pytest.raises(FluxFileError) as caught:
        load_flux_transformer(path)
    assert isinstance(caught.value, ModelFileError)  # the API's handlers already know this type
    assert str(path.parent) not in caught.value.public_message  # a client never sees our folders
    return caught.value


def test_a_truncated_safetensors_file_is_named_truncated(tmp_path: Path) -> None:
    path = _cut(write_flux_bfl_file(tmp_path / "flux1-dev.safetensors"))
    with pytest.raises(FluxFileError) as caught:
        detect_flux_transformer(path)
    assert caught.value.kind == "truncated"
    assert _error(path).kind == "truncated"


@pytest.mark.parametrize("keep", [0.9, 0.2, 0.001])
def test_a_truncated_gguf_file_is_refused_readably(keep: float, tmp_path: Path) -> None:
    path = _cut(write_flux_gguf_file(tmp_path / "flux.gguf", GGMLQuantizationType.Q8_0), keep)
    error = _error(path)
    assert error.kind in ("truncated", "corrupt") and "re-download" in error.detail


def test_a_file_of_garbage_is_refused(tmp_path: Path) -> None:
    for name in ("flux.safetensors", "flux.gguf"):
        (tmp_path / name).write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
        assert _error(tmp_path / name).kind in ("truncated", "not_safetensors", "header_too_large", "corrupt")


@pytest.mark.parametrize("names", [
    ["diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight",
     "diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight"],  # BFL-named LoRA
    ["transformer.transformer_blocks.0.attn.to_q.lora_A.weight",
     "transformer.transformer_blocks.0.attn.to_q.lora_B.weight"],  # diffusers/PEFT LoRA
    ["lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight",
     "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight", "lora_unet_double_blocks_0_img_attn_qkv.alpha"],
])
def test_a_lora_is_not_taken_for_a_transformer(names: list[str], tmp_path: Path) -> None:
    path = tmp_path / "flux-lora.safetensors"
    save_file({name: torch.randn(4, 4) for name in names}, str(path))
    assert detect_flux_transformer(path) is None
    error = _error(path)
    assert error.kind == "lora" and "models/Lora" in error.detail


def test_a_vae_is_not_taken_for_a_transformer(tmp_path: Path) -> None:
    path = tmp_path / "ae.safetensors"
    save_file({"encoder.down.0.block.0.conv1.weight": torch.randn(4, 4, 3, 3),
               "decoder.up.0.block.0.conv1.weight": torch.randn(4, 4, 3, 3)}, str(path))
    assert detect_flux_transformer(path) is None
    error = _error(path)
    assert error.kind == "vae" and "models/VAE" in error.detail


def test_an_sd_checkpoint_or_other_transformer_is_not_flux(tmp_path: Path) -> None:
    path = tmp_path / "sd15.safetensors"
    save_file({"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight": torch.randn(4, 4),
               "double_blocks.0.img_attn.qkv.weight": torch.randn(12, 4)}, str(path))  # no FLUX embedders
    assert detect_flux_transformer(path) is None
    assert _error(path).kind == "not_flux"


def test_a_missing_block_is_named(tmp_path: Path) -> None:
    spec = TinyFlux(num_layers=3)
    state = {k: v for k, v in tiny_flux_bfl_state_dict(spec).items() if not k.startswith("double_blocks.1.")}
    error = _error(save_bfl_state(tmp_path / "flux.safetensors", state))
    assert error.kind == "incomplete" and "double_blocks.1" in error.detail


@pytest.mark.parametrize("missing", ["double_blocks.0.img_attn.proj.weight", "single_blocks.1.linear1.bias",
                                     "final_layer.adaLN_modulation.1.weight", "guidance_in.out_layer.bias"])
def test_a_missing_tensor_is_named(missing: str, tmp_path: Path) -> None:
    state = tiny_flux_bfl_state_dict(DEV)
    del state[missing]
    error = _error(save_bfl_state(tmp_path / "flux.safetensors", state))
    assert error.kind == "incomplete" and missing in error.detail


def test_a_diffusers_file_missing_a_single_block_tensor_is_named(tmp_path: Path) -> None:
    state = build_tiny_flux().state_dict()
    del state["single_transformer_blocks.0.attn.to_k.weight"]
    path = tmp_path / "flux-diffusers.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    error = _error(path)
    assert error.kind == "incomplete" and "single_transformer_blocks.0.attn.to_k.weight" in error.detail


def test_tensors_of_the_wrong_width_are_refused(tmp_path: Path) -> None:
    state = tiny_flux_bfl_state_dict(DEV)
    state["double_blocks.0.img_attn.qkv.weight"] = torch.randn(2 * 64, 64)  # q and k only
    error = _error(save_bfl_state(tmp_path / "flux.safetensors", state))
    assert error.kind == "unsupported" and "img_attn.qkv" in error.detail


def test_a_gguf_type_diffusers_cannot_compute_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "flux-mxfp4.gguf"
    writer = GGUFWriter(path, arch="flux")
    for name, tensor in tiny_flux_bfl_state_dict(DEV).items():
        values = tensor.numpy()
        if name == "img_in.weight":
            writer.add_tensor(name, gguf.quants.quantize(values, GGMLQuantizationType.MXFP4),
                              raw_dtype=GGMLQuantizationType.MXFP4)
        else:
            writer.add_tensor(name, values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    error = _error(path)
    assert error.kind == "unsupported" and "MXFP4" in error.detail and "Q8_0" in error.detail


def test_an_empty_diffusers_folder_says_where_the_weights_go(tmp_path: Path) -> None:
    (tmp_path / "FLUX.1-dev" / "transformer").mkdir(parents=True)
    error = _error(tmp_path / "FLUX.1-dev")
    assert error.kind == "not_flux" and "diffusion_pytorch_model" in error.detail
