"""The demo model: Stable Diffusion 1.x's architecture at a width a CPU can train.

Same component classes, key layout and noise schedule as SD1.5, so the registry, the loader
(``from_single_file``) and every A1111 sampler treat it like any SD1.x checkpoint:

* VAE: ``AutoencoderKL``, 4 levels (8x downscale), 16/32/64/64 channels, 4 latent channels.
  128x128 pixels <-> 4x16x16 latents.
* Text encoder: ``CLIPTextModel`` with the real 49,408-token CLIP BPE vocabulary and 77
  positions, but 64 wide and 3 layers deep (SD1.5: 768 wide, 12 layers).
* UNet: ``UNet2DConditionModel``, 3 levels of 32/64/128 channels, cross-attention on the
  two lower levels (at 8x8 and 4x4 latents, where it is cheap).
* Schedule: SD's scaled-linear betas 0.00085..0.012 over 1000 steps, epsilon prediction.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "IMAGE_SIDE",
    "LATENT_SIDE",
    "MODEL_NAME",
    "build_scheduler",
    "build_text_encoder",
    "build_unet",
    "build_vae",
    "scheduler_config",
]

MODEL_NAME = "aigen-demo-v2"
IMAGE_SIDE = 128
LATENT_SIDE = IMAGE_SIDE // 8
TEXT_WIDTH = 64


def build_vae(scaling_factor: float = 0.18215) -> Any:
    """A fresh ``AutoencoderKL``; ``scaling_factor`` is set from the data after VAE training."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 64, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=IMAGE_SIDE,
        scaling_factor=scaling_factor,
    )


def build_text_encoder() -> Any:
    """A fresh ``CLIPTextModel`` shaped like SD1.x's (quick GELU, causal, 77 positions)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=49408,
        max_position_embeddings=77,
        hidden_size=TEXT_WIDTH,
        intermediate_size=4 * TEXT_WIDTH,
        num_hidden_layers=3,
        num_attention_heads=4,
        hidden_act="quick_gelu",
        projection_dim=TEXT_WIDTH,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    return CLIPTextModel(config)


def build_unet() -> Any:
    """A fresh ``UNet2DConditionModel`` taking 4x16x16 latents and 77x64 text states."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=LATENT_SIDE,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 128),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=4,
        norm_num_groups=32,
    )


def scheduler_config() -> dict[str, Any]:
    """SD1.5's training schedule (Rombach et al. 2022, LDM config ``linear_start/end``)."""
    return {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "prediction_type": "epsilon",
        "timestep_spacing": "leading",
        "steps_offset": 1,
    }


def build_scheduler() -> Any:
    """The Euler scheduler saved with the model (the engine picks its own sampler)."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(**scheduler_config())
