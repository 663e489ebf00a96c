"""Configs read from shapes give the real models: T5-XXL's 4.76 B-parameter encoder, CLIP-L's
123 M-parameter text model and FLUX.1's autoencoder, built on the meta device from headers
that have the real files' names and shapes (no weights needed)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from transformers import CLIPTextModel, T5EncoderModel

from modules.families.flux.autoencoder import vae_config_from_shapes
from modules.families.flux.part_files import T5XXL, classify_keys
from modules.families.flux.t5 import t5_config_from_shapes
from modules.families.flux.text_encoders import clip_config_from_shapes
from modules.families.flux.weights import PartTensors
from modules.models.files import SafetensorsHeader
from modules.models.ldm_export import vae_to_ldm


def _part(shapes: dict[str, tuple[int, ...]], prefix: str = "") -> PartTensors:
    header = SafetensorsHeader(tensors={key: {"shape": list(shape), "dtype": "F16", "data_offsets": [0, 0]}
                                        for key, shape in shapes.items()}, metadata={})
    return PartTensors(Path("header-only.safetensors"), header, prefix, io.BytesIO(struct.pack("<Q", 0)), "cpu")


def _t5xxl_shapes() -> dict[str, tuple[int, ...]]:
    """The encoder tensors of ``t5xxl_fp16.safetensors`` (T5 v1.1 XXL), with their shapes."""
    shapes: dict[str, tuple[int, ...]] = {"shared.weight": (32128, 4096), "encoder.final_layer_norm.weight": (4096,),
                                          "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight":
                                          (32, 64)}
    for n in range(24):
        block = f"encoder.block.{n}.layer."
        for proj in "qkvo":
            shapes[f"{block}0.SelfAttention.{proj}.weight"] = (4096, 4096)
        shapes[f"{block}0.layer_norm.weight"] = (4096,)
        shapes[f"{block}1.DenseReluDense.wi_0.weight"] = (10240, 4096)
        shapes[f"{block}1.DenseReluDense.wi_1.weight"] = (10240, 4096)
        shapes[f"{block}1.DenseReluDense.wo.weight"] = (4096, 10240)
        shapes[f"{block}1.layer_norm.weight"] = (4096,)
    return shapes


def _parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_t5xxl_config_from_shapes() -> None:
    config = t5_config_from_shapes(_part(_t5xxl_shapes()))
    assert (config.d_model, config.d_kv, config.num_heads, config.d_ff, config.num_layers) == (4096, 64, 64, 10240, 24)
    assert config.vocab_size == 32128 and config.is_gated_act and config.relative_attention_num_buckets == 32
    with torch.device("meta"):
        model = T5EncoderModel(config)
    assert _parameters(model) == 4_762_310_656  # the T5 v1.1 XXL encoder
    assert classify_keys(_t5xxl_shapes())[0][0] == T5XXL


def test_clip_l_config_from_shapes() -> None:
    shapes = {"text_model.embeddings.token_embedding.weight": (49408, 768),
              "text_model.embeddings.position_embedding.weight": (77, 768)}
    for n in range(12):
        shapes[f"text_model.encoder.layers.{n}.mlp.fc1.weight"] = (3072, 768)
    config = clip_config_from_shapes(_part(shapes))
    assert (config.hidden_size, config.num_attention_heads, config.num_hidden_layers) == (768, 12, 12)
    assert (config.intermediate_size, config.hidden_act, config.eos_token_id) == (3072, "quick_gelu", 2)
    with torch.device("meta"):
        model = CLIPTextModel(config)
    assert _parameters(model) == 123_060_480  # OpenAI CLIP ViT-L/14's text model


def test_flux_ae_config_from_shapes() -> None:
    with torch.device("meta"):
        reference = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4,
                                  up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
                                  layers_per_block=2, latent_channels=16,
                                  use_quant_conv=False, use_post_quant_conv=False)
    ldm = vae_to_ldm(reference.state_dict(), reference.config, prefix="vae.")
    config = vae_config_from_shapes(_part({key: tuple(t.shape) for key, t in ldm.items()}, prefix="vae."))
    assert config["block_out_channels"] == [128, 256, 512, 512] and config["layers_per_block"] == 2
    assert config["latent_channels"] == 16 and not config["use_quant_conv"] and not config["use_post_quant_conv"]
    assert config["mid_block_add_attention"] and config["in_channels"] == config["out_channels"] == 3
    with torch.device("meta"):
        model = AutoencoderKL(**config)
    assert _parameters(model) == _parameters(reference)
