"""FLUX.1's denoiser call, behind the UNet calling convention the loop uses.

The loop (``processing/sampling/denoise.py``) keeps latents as (B, 16, H/8, W/8), as every family
does, so hooks, previews, inpainting blends and Hires. fix need nothing FLUX-specific. This
adapter builds what diffusers' ``FluxTransformer2DModel`` takes around each call:

- 2 x 2 latent patches packed into a sequence of (H/16 * W/16) tokens of 64 values;
- 3-axis position ids per token (0, row, column) for the image, all zeros for the text;
- the flow time ``t`` in 0..1 (the scheduler counts timesteps 0..1000);
- the distilled guidance strength of FLUX.1-dev ("Distilled CFG Scale"), one per image;
- the pooled CLIP-L embedding, which the loop passes as SDXL's ``text_embeds``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["FluxDenoiser", "image_position_ids", "pack_latents", "unpack_latents"]

PATCH = 2
#: The scheduler's timesteps are the flow time times this (diffusers' flow-matching schedulers).
TIMESTEP_SCALE = 1000.0


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) latents, h and w even, as (B, h/2 * w/2, 4C) tokens of 2 x 2 patches, row-major."""
    batch, channels, height, width = latents.shape
    patches = latents.view(batch, channels, height // PATCH, PATCH, width // PATCH, PATCH)
    return patches.permute(0, 2, 4, 1, 3, 5).reshape(batch, (height // PATCH) * (width // PATCH),
                                                     channels * PATCH * PATCH)


def unpack_latents(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The inverse of ``pack_latents``: (B, h/2 * w/2, 4C) tokens back to (B, C, h, w)."""
    batch, _, values = tokens.shape
    channels = values // (PATCH * PATCH)
    patches = tokens.view(batch, height // PATCH, width // PATCH, channels, PATCH, PATCH)
    return patches.permute(0, 3, 1, 4, 2, 5).reshape(batch, channels, height, width)


def image_position_ids(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(h/2 * w/2, 3) position ids of the packed image tokens: (0, row, column) per patch."""
    rows, cols = height // PATCH, width // PATCH
    ids = torch.zeros(rows, cols, 3)
    ids[..., 1] = torch.arange(rows)[:, None]
    ids[..., 2] = torch.arange(cols)[None, :]
    return ids.reshape(rows * cols, 3).to(device=device, dtype=dtype)


class FluxDenoiser(torch.nn.Module):
    """A FLUX transformer called like a diffusers UNet: ``(sample, timestep, encoder_hidden_states,
    added_cond_kwargs=..., return_dict=False) -> (prediction,)``.

    Args:
        transformer: a diffusers ``FluxTransformer2DModel``.
        distilled_guidance: FLUX.1-dev's guidance strength (e.g. 3.5); ignored (None) for models
            without a guidance embedding (schnell).
    """

    def __init__(self, transformer: torch.nn.Module, distilled_guidance: float | None = None) -> None:
        super().__init__()
        self.transformer = transformer
        self.distilled_guidance = distilled_guidance if transformer.config.guidance_embeds else None

    @property
    def config(self) -> Any:
        return self.transformer.config

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                added_cond_kwargs: Mapping[str, torch.Tensor] | None = None, return_dict: bool = False,
                **unused: Any) -> tuple[torch.Tensor]:
        """One prediction of the flow velocity ``eps - x0``.

        Args:
            sample: (N, 16, h, w) latents (N = batch x CFG copies).
            timestep: the scheduler's timestep, flow time x 1000 (0-d or (N,)).
            encoder_hidden_states: (N, T, 4096) T5 embeddings.
            added_cond_kwargs: ``{"text_embeds": (N, 768)}``, the pooled CLIP-L embedding, and
                optionally ``"guidance"`` (N,), a pass's own distilled guidance strength.

        Returns:
            ``((N, 16, h, w) velocity,)``.
        """
        batch, _, height, width = sample.shape
        if added_cond_kwargs is None or "text_embeds" not in added_cond_kwargs:
            raise ValueError("FLUX needs the pooled CLIP-L embedding (added_cond_kwargs['text_embeds'])")
        dtype = self.transformer.dtype
        t = (timestep.to(torch.float32) / TIMESTEP_SCALE).expand(batch).to(dtype)
        guidance = None
        if "guidance" in added_cond_kwargs and self.distilled_guidance is not None:
            guidance = added_cond_kwargs["guidance"].to(device=sample.device, dtype=torch.float32)
        elif self.distilled_guidance is not None:
            guidance = torch.full((batch,), float(self.distilled_guidance), device=sample.device, dtype=torch.float32)
        tokens = self.transformer(
            hidden_states=pack_latents(sample.to(dtype)),
            encoder_hidden_states=encoder_hidden_states.to(dtype),
            pooled_projections=added_cond_kwargs["text_embeds"].to(dtype),
            timestep=t, guidance=guidance,
            img_ids=image_position_ids(height, width, sample.device, dtype),
            txt_ids=torch.zeros(encoder_hidden_states.shape[1], 3, device=sample.device, dtype=dtype),
            return_dict=False,
        )[0]
        return (unpack_latents(tokens, height, width),)
