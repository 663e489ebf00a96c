"""FLUX.1 from its files to latents on the engine's own loop, against diffusers' FluxPipeline.

BFL's transformer-only file, ``clip_l`` and ``t5xxl_fp16`` in models/text_encoder and ``ae`` in
models/VAE (tiny random weights, real key layouts), each loaded by our loaders and chosen as
Forge does; the prompt encoded by our encoders; the flow Euler sampler and the FLUX denoiser
adapter on ``denoise()``. The same components and noise through FluxPipeline must give the same
latents: the pieces fit, and the loop is FLUX's sampler."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

from modules.families.flux.denoiser import FluxDenoiser, pack_latents, unpack_latents
from modules.families.flux.parts import choose_flux_parts, load_part, load_text_encoders
from modules.families.flux.transformer import load_flux_transformer
from modules.processing.generation.vae import decode_latents
from modules.processing.prompts.conditioning import Conditioning
from modules.processing.sampling.denoise import DenoiseInputs, denoise
from modules.processing.sampling.flow_samplers import flow_scheduler, resolve_flow_sampler
from modules.processing.sampling.hooks import HookDispatcher
from tests.families.flux.tiny_flux import DEV, write_tiny_flux
from tests.families.flux.tiny_flux_parts import CLIP_WIDTH, T5_WIDTH, write_tiny_flux_parts

#: FLUX.1-dev's scheduler_config.json.
DEV_SCHEDULER = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5,
                 "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096}
STEPS, LATENT_SIDE = 4, 8


def test_flux_files_generate_on_the_engine_loop_as_flux_pipeline_does(tmp_path: Path) -> None:
    write_tiny_flux_parts(tmp_path)
    spec = replace(DEV, joint_attention_dim=T5_WIDTH, pooled_projection_dim=CLIP_WIDTH)
    checkpoint = write_tiny_flux("bfl", tmp_path / "checkpoints", spec)
    parts = choose_flux_parts(checkpoint, tmp_path / "text_encoder", tmp_path / "VAE",
                              chosen=["t5xxl_fp16.safetensors"])  # two T5 files there: the user picks one
    encoders = load_text_encoders(parts, torch.float32)
    vae, transformer = load_part(parts.vae, torch.float32), load_flux_transformer(checkpoint, dtype=torch.float32)
    embeds = encoders.encode(["a red fox in the snow"], max_length=256)

    noise = torch.randn(1, 16, LATENT_SIDE, LATENT_SIDE, generator=torch.Generator().manual_seed(7))
    scheduler = flow_scheduler(resolve_flow_sampler("Euler"), DEV_SCHEDULER, STEPS, (LATENT_SIDE // 2) ** 2, "cpu")
    inputs = DenoiseInputs(unet=FluxDenoiser(transformer, distilled_guidance=3.5), scheduler=scheduler, latents=noise,
                           cond=Conditioning(embeds.prompt_embeds, embeds.pooled_prompt_embeds), uncond=None,
                           guidance_scale=1.0, num_steps=STEPS)
    with torch.no_grad():
        ours = denoise(inputs, HookDispatcher(), lambda: None, lambda step, latents: None)

    pipeline = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_config(DEV_SCHEDULER), vae=vae,
                            text_encoder=encoders.clip_l, tokenizer=encoders.clip_tokenizer,
                            text_encoder_2=encoders.t5, tokenizer_2=encoders.t5_tokenizer, transformer=transformer)
    side = LATENT_SIDE * pipeline.vae_scale_factor
    reference = pipeline(prompt_embeds=embeds.prompt_embeds, pooled_prompt_embeds=embeds.pooled_prompt_embeds,
                         latents=pack_latents(noise), height=side, width=side, num_inference_steps=STEPS,
                         guidance_scale=3.5, output_type="latent").images
    assert torch.allclose(ours, unpack_latents(reference, LATENT_SIDE, LATENT_SIDE), atol=1e-5)

    pixels = decode_latents(vae, ours)  # FLUX's VAE scale and shift, from its config
    assert pixels.shape == (1, 3, side, side) and torch.isfinite(pixels).all()
