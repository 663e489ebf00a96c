"""Tiny, random-weight but structurally faithful Stable Diffusion pipelines for tests.

Not a test module: import it with ``from tests.tiny_models import build_tiny_pipeline``.

Every family builds on CPU in well under a second and is deterministic from ``seed``.
Weights are random everywhere (norm weights and biases too, so a swapped key cannot go
unnoticed). The text encoders keep the real CLIP vocabulary size (49408) so the real
tokenizer in ``modules/models/configs/clip_tokenizer`` can drive them; that embedding is
most of the size of a checkpoint (about 10 MB for SD1.x/SD2.x, 22 MB for SDXL, float32).

SDXL's second text encoder is 48 wide rather than 32: diffusers'
``from_single_file`` tells the two SDXL encoders apart only by the width of their
position embeddings, so equal widths would load encoder 1's weights into encoder 2.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKL,
    DiffusionPipeline,
    EulerDiscreteScheduler,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer  # noqa: E402

from modules.models.config_folder import write_config_folder  # noqa: E402
from modules.models.ldm_export import save_ldm_checkpoint  # noqa: E402

FAMILIES = ("sd15", "sd15_inpaint", "sd2", "sdxl", "sdxl_inpaint")
TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "modules" / "models" / "configs" / "clip_tokenizer"
TEXT_HIDDEN = 32
TEXT2_HIDDEN = 48
TEXT2_PROJECTION = 32
TIME_EMBED_DIM = 8
_PIPELINES = {
    "sd15": StableDiffusionPipeline,
    "sd15_inpaint": StableDiffusionInpaintPipeline,
    "sd2": StableDiffusionPipeline,
    "sdxl": StableDiffusionXLPipeline,
    "sdxl_inpaint": StableDiffusionXLInpaintPipeline,
}


def _is_xl(family: str) -> bool:
    """Tells whether ``family`` is an SDXL family."""
    return family.startswith("sdxl")


def _unet(family: str) -> UNet2DConditionModel:
    """Builds the tiny UNet of ``family`` (2 levels, 32/64 channels, sample size 8)."""
    common = dict(
        sample_size=8,
        in_channels=9 if family.endswith("_inpaint") else 4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    if not _is_xl(family):
        return UNet2DConditionModel(
            **common,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=TEXT_HIDDEN,
            use_linear_projection=family == "sd2",
        )
    return UNet2DConditionModel(
        **common,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_HIDDEN + TEXT2_HIDDEN,
        use_linear_projection=True,
        transformer_layers_per_block=(1, 2),
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=6 * TIME_EMBED_DIM + TEXT2_PROJECTION,
    )


def _vae(family: str) -> AutoencoderKL:
    """Builds a 4-level (8x downscale) tiny AutoencoderKL."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=0.13025 if _is_xl(family) else 0.18215,
    )


def _text_config(
    hidden: int = TEXT_HIDDEN, hidden_act: str = "quick_gelu", projection_dim: int = TEXT2_PROJECTION
) -> CLIPTextConfig:
    """Builds a 2-layer CLIP text config with the real vocabulary and context sizes."""
    return CLIPTextConfig(
        vocab_size=49408,
        max_position_embeddings=77,
        hidden_size=hidden,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        hidden_act=hidden_act,
        projection_dim=projection_dim,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )


@lru_cache(maxsize=2)
def _cached_tokenizer(pad_token: str) -> CLIPTokenizer:
    """Loads the real CLIP BPE tokenizer once per pad token."""
    return CLIPTokenizer(
        vocab=str(TOKENIZER_DIR / "vocab.json"),
        merges=str(TOKENIZER_DIR / "merges.txt"),
        pad_token=pad_token,
        model_max_length=77,
    )


def tiny_tokenizer(pad_token: str = "<|endoftext|>") -> CLIPTokenizer:
    """Returns the real CLIP tokenizer (shared instance; treat it as read-only).

    Args:
        pad_token: ``"<|endoftext|>"`` (SD1.x, SDXL tokenizer 1) or ``"!"`` (SD2.x, SDXL
            tokenizer 2).

    Returns:
        A ``CLIPTokenizer`` with ``model_max_length`` 77.
    """
    return _cached_tokenizer(pad_token)


def tiny_tokenizers(family: str) -> dict[str, CLIPTokenizer]:
    """Returns the tokenizer keyword arguments a ``family`` pipeline needs.

    Args:
        family: One of :data:`FAMILIES`.

    Returns:
        ``{"tokenizer": ...}`` plus ``"tokenizer_2"`` for SDXL families, ready to pass
        to ``from_single_file`` (the tiny config folders hold no tokenizer files).
    """
    if _is_xl(family):
        return {"tokenizer": tiny_tokenizer(), "tokenizer_2": tiny_tokenizer("!")}
    return {"tokenizer": tiny_tokenizer("!" if family == "sd2" else "<|endoftext|>")}


def _scheduler(family: str) -> EulerDiscreteScheduler:
    """Builds SD's Euler scheduler (scaled-linear betas; SD2 predicts v)."""
    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction" if family == "sd2" else "epsilon",
        timestep_spacing="leading",
        steps_offset=1,
    )


def _randomize(*models: torch.nn.Module) -> None:
    """Adds small Gaussian noise to every parameter so no tensor is constant."""
    with torch.no_grad():
        for model in models:
            for param in model.parameters():
                param.add_(torch.randn_like(param), alpha=0.02)


def _text_encoders(family: str) -> dict[str, torch.nn.Module]:
    """Builds the text encoder(s) of ``family``."""
    if not _is_xl(family):
        act = "gelu" if family == "sd2" else "quick_gelu"
        return {"text_encoder": CLIPTextModel(_text_config(hidden_act=act))}
    encoder_2 = CLIPTextModelWithProjection(_text_config(TEXT2_HIDDEN, "gelu", TEXT2_PROJECTION))
    return {"text_encoder": CLIPTextModel(_text_config()), "text_encoder_2": encoder_2}


def build_tiny_pipeline(family: str, seed: int = 0) -> DiffusionPipeline:
    """Builds a tiny random pipeline of ``family`` on CPU, float32, in eval mode.

    Args:
        family: ``"sd15"``, ``"sd15_inpaint"``, ``"sd2"``, ``"sdxl"`` or ``"sdxl_inpaint"``.
        seed: Seed of all weights; equal seeds give identical pipelines.

    Returns:
        ``StableDiffusion(Inpaint)Pipeline`` or ``StableDiffusionXL(Inpaint)Pipeline``
        without safety checker or feature extractor.
    """
    if family not in _PIPELINES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    torch.manual_seed(seed)
    unet, vae, encoders = _unet(family), _vae(family), _text_encoders(family)
    _randomize(unet, vae, *encoders.values())
    for model in (unet, vae, *encoders.values()):
        model.eval()
    components = dict(unet=unet, vae=vae, scheduler=_scheduler(family), **encoders, **tiny_tokenizers(family))
    if _is_xl(family):
        extra = dict(image_encoder=None, feature_extractor=None, add_watermarker=False)
        if family == "sdxl_inpaint":
            extra["requires_aesthetics_score"] = False
    else:
        extra = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return _PIPELINES[family](**components, **extra)


def write_tiny_checkpoint(directory: Path, family: str, name: str | None = None, seed: int = 0) -> Path:
    """Writes a tiny LDM single-file checkpoint plus its diffusers config folder.

    Args:
        directory: Folder to write into (created).
        family: See :func:`build_tiny_pipeline`.
        name: File stem; defaults to ``"tiny-<family>"``.
        seed: Weight seed.

    Returns:
        Path of ``<name>.safetensors``; the configs are in ``<name>.config/`` beside it
        (no tokenizer files: pass :func:`tiny_tokenizers` to ``from_single_file``).
    """
    name = name or f"tiny-{family}"
    directory = Path(directory)
    pipeline = build_tiny_pipeline(family, seed)
    path = save_ldm_checkpoint(pipeline, directory / f"{name}.safetensors")
    write_config_folder(pipeline, directory / f"{name}.config")
    return path
