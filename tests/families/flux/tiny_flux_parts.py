"""Tiny random-weight FLUX.1 parts, written as the files users have.

CLIP-L, T5 and the FLUX autoencoder with their real key names and tiny shapes (real
vocabularies, so the shipped tokenizers' ids fit), saved as ``clip_l.safetensors``,
``t5xxl_fp16.safetensors`` (with the unused ``decoder.*`` some files carry),
``t5xxl_fp8_e4m3fn.safetensors`` (fp8 storage, ``encoder.embed_tokens.weight`` instead of
``shared.weight``), ``ae.safetensors`` (BFL's LDM layout) and a ComfyUI-style all-in-one
checkpoint. The models built here are the reference the loaded files are compared with.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

from modules.models.ldm_export import vae_to_ldm

CLIP_WIDTH, T5_WIDTH = 64, 32
CLIP_PREFIX = "text_encoders.clip_l.transformer."
T5_PREFIX = "text_encoders.t5xxl.transformer."
VAE_PREFIX = "vae."
TRANSFORMER_PREFIX = "model.diffusion_model."


def _randomize(model: torch.nn.Module, seed: int) -> None:
    """Perturb every weight, then round it to a float16 value, so a float16 file holds it exactly."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator), alpha=0.05)
            param.copy_(param.half().float())
    model.requires_grad_(False)


@lru_cache(maxsize=4)
def tiny_clip_l(seed: int = 0) -> CLIPTextModel:
    """A 2-layer CLIP text model with CLIP-L's vocabulary, context and activation (1 head of 64)."""
    config = CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, hidden_size=CLIP_WIDTH, intermediate_size=96,
                            num_hidden_layers=2, num_attention_heads=1, hidden_act="quick_gelu", eos_token_id=2,
                            bos_token_id=0, pad_token_id=1, projection_dim=CLIP_WIDTH)
    with torch.random.fork_rng():  # the same model in every process
        torch.manual_seed(seed)
        model = CLIPTextModel(config).eval()
    _randomize(model, seed)
    return model


@lru_cache(maxsize=4)
def tiny_t5(seed: int = 0) -> T5EncoderModel:
    """A 2-layer T5 v1.1 encoder (gated GELU) with T5's 32,128-row vocabulary, 4 heads of 8."""
    config = T5Config(vocab_size=32128, d_model=T5_WIDTH, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
                      relative_attention_num_buckets=32, relative_attention_max_distance=128,
                      feed_forward_proj="gated-gelu", dropout_rate=0.0, tie_word_embeddings=False)
    with torch.random.fork_rng():  # the same model in every process
        torch.manual_seed(seed)
        model = T5EncoderModel(config).eval()
    _randomize(model, seed)
    return model


@lru_cache(maxsize=4)
def tiny_flux_vae(seed: int = 0) -> AutoencoderKL:
    """A 4-level (8x) autoencoder with FLUX's 16 latent channels and no quant convs."""
    with torch.random.fork_rng():  # the same model in every process
        torch.manual_seed(seed)
        model = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                              up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(32, 32, 32, 32),
                              layers_per_block=1, latent_channels=16, norm_num_groups=32, use_quant_conv=False,
                              use_post_quant_conv=False, scaling_factor=0.3611, shift_factor=0.1159).eval()
    _randomize(model, seed)
    return model


def clip_l_state(model: CLIPTextModel) -> dict[str, torch.Tensor]:
    """``clip_l.safetensors`` keys: ``text_model.*`` plus the ``text_projection`` some files carry."""
    state = {"text_model." + key: value.detach().clone() for key, value in model.state_dict().items()}
    state["text_projection.weight"] = torch.zeros(CLIP_WIDTH, CLIP_WIDTH)
    return state


def t5_state(model: T5EncoderModel, embedding: str = "shared.weight", decoder: bool = False,
             dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """A T5 encoder file's keys, with the token embedding under ``embedding`` only."""
    state = {key: value.detach().clone() for key, value in model.state_dict().items()
             if key not in ("shared.weight", "encoder.embed_tokens.weight")}
    state[embedding] = model.shared.weight.detach().clone()
    if decoder:  # the unused decoder some t5xxl files still carry
        state["decoder.block.0.layer.0.SelfAttention.q.weight"] = torch.zeros(T5_WIDTH, T5_WIDTH)
        state["decoder.final_layer_norm.weight"] = torch.ones(T5_WIDTH)
    return {key: value.to(dtype) if dtype else value for key, value in state.items()}


def ae_state(vae: AutoencoderKL) -> dict[str, torch.Tensor]:
    """``ae.safetensors`` keys (LDM layout, no prefix)."""
    return vae_to_ldm({k: v.detach().clone() for k, v in vae.state_dict().items()}, vae.config, prefix="")


def fp8_rounded(model: T5EncoderModel) -> T5EncoderModel:
    """The same encoder with every weight rounded through float8 e4m3 (what the fp8 file holds)."""
    rounded = T5EncoderModel(model.config).eval()
    rounded.load_state_dict({k: v.to(torch.float8_e4m3fn).float() for k, v in model.state_dict().items()})
    return rounded


def transformer_stub() -> dict[str, torch.Tensor]:
    """A few FLUX transformer keys (BFL layout) that name the widths it takes; not a model."""
    return {"img_in.weight": torch.zeros(16, 64), "txt_in.weight": torch.zeros(16, T5_WIDTH),
            "vector_in.in_layer.weight": torch.zeros(16, CLIP_WIDTH)}


@dataclass(frozen=True)
class TinyFluxParts:
    """The written files and the models they were made from."""

    clip_l: CLIPTextModel
    t5: T5EncoderModel
    vae: AutoencoderKL
    clip_file: Path
    t5_fp16_file: Path
    t5_fp8_file: Path
    ae_file: Path
    all_in_one: Path
    transformer_only: Path


def write_tiny_flux_parts(folder: Path) -> TinyFluxParts:
    """Write every file into ``folder`` (``text_encoder/``, ``VAE/``, ``Stable-diffusion/``)."""
    clip, t5, vae = tiny_clip_l(1), tiny_t5(2), tiny_flux_vae(3)
    text_dir, vae_dir, ckpt_dir = folder / "text_encoder", folder / "VAE", folder / "Stable-diffusion"
    for directory in (text_dir, vae_dir, ckpt_dir):
        directory.mkdir(parents=True, exist_ok=True)
    files = TinyFluxParts(clip, t5, vae, text_dir / "clip_l.safetensors", text_dir / "t5xxl_fp16.safetensors",
                          text_dir / "t5xxl_fp8_e4m3fn.safetensors", vae_dir / "ae.safetensors",
                          ckpt_dir / "flux1-tiny-aio.safetensors", ckpt_dir / "flux1-tiny.safetensors")
    save_file({k: v.half() for k, v in clip_l_state(clip).items()}, files.clip_file)
    save_file(t5_state(t5, decoder=True, dtype=torch.float16), files.t5_fp16_file)
    save_file(t5_state(t5, "encoder.embed_tokens.weight", dtype=torch.float8_e4m3fn), files.t5_fp8_file)
    save_file(ae_state(vae), files.ae_file)
    stub = transformer_stub()
    save_file({TRANSFORMER_PREFIX + k: v for k, v in stub.items()}, files.transformer_only)
    aio = {TRANSFORMER_PREFIX + k: v for k, v in stub.items()}
    aio.update({CLIP_PREFIX + k: v for k, v in clip_l_state(clip).items()})
    aio.update({T5_PREFIX + k: v for k, v in t5_state(t5).items()})
    aio.update({VAE_PREFIX + k: v for k, v in ae_state(vae).items()})
    save_file(aio, files.all_in_one)
    return files
