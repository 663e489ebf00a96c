"""Dynamic thresholding (Saharia et al. 2022, "Photorealistic Text-to-Image Diffusion Models
with Deep Language Understanding", Sec. 2.3), on latents.

High CFG scales push the predicted clean latents far outside the range the VAE decodes well,
which shows as burnt, over-saturated images. At each step this script takes the model's
prediction of the clean latents x0 (the engine's ``after_denoise`` hook: the same x0 for every
sampler and model family), and where a high percentile s of |x0| exceeds ``limit`` it clamps x0
to [-s, s] and scales it back to [-limit, limit]. The engine turns the returned x0 back into the
sampler's own model output.
"""

from __future__ import annotations

import torch

from modules.extensions.api import (
    AlwaysVisible,
    Checkbox,
    Script,
    Slider,
    StepParams,
    Txt2ImgRequest,
    register_callback,
)

MIN_SIGMA = "dynamic_thresholding_min_sigma"


def settings() -> dict:
    # A Settings-tab option: leave the low-noise end alone, where clamping can dull fine detail.
    return {MIN_SIGMA: Slider("Dynamic thresholding: only while sigma is at least", 0.0, 100.0, 0.0, step=0.1)}


register_callback("on_ui_settings", settings)


class DynamicThresholding(Script):
    def title(self) -> str:
        return "Dynamic thresholding"

    def show(self, is_img2img: bool) -> object:
        return AlwaysVisible

    def ui(self, is_img2img: bool) -> dict:
        return {
            "enabled": Checkbox("Enable dynamic thresholding", False),
            "percentile": Slider("Percentile of |x0| that sets the threshold", 90.0, 100.0, 99.5, step=0.1),
            "limit": Slider("Keep x0 within ±", 1.0, 10.0, 3.0, step=0.1),
        }

    def infotext(self, p: Txt2ImgRequest, enabled: bool, percentile: float, limit: float) -> dict | None:
        # Recorded only when on, so images made without it have no trace of it.
        if not enabled:
            return None
        return {"Dynamic thresholding": True, "Dynamic thresholding percentile": percentile,
                "Dynamic thresholding limit": limit}

    def paste_fields(self) -> dict:
        return {"Dynamic thresholding": "enabled", "Dynamic thresholding percentile": "percentile",
                "Dynamic thresholding limit": "limit"}

    def after_denoise(self, p: Txt2ImgRequest, step: StepParams, denoised: torch.Tensor, enabled: bool,
                      percentile: float, limit: float) -> torch.Tensor | None:
        if not enabled or step.sigma < self.option(MIN_SIGMA, 0.0):
            return None
        # Per image: the percentile of |x0| over all its latent values.
        s = torch.quantile(denoised.abs().flatten(1).float(), percentile / 100.0, dim=1).to(denoised.dtype)
        s = torch.clamp(s, min=limit).view(-1, 1, 1, 1)
        return torch.maximum(torch.minimum(denoised, s), -s) * (limit / s)
