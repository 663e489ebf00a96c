"""The FLUX denoiser adapter: the loop's UNet-style call gives exactly what the transformer gives
when called as diffusers' FluxPipeline calls it."""

from __future__ import annotations

import pytest
import torch
from diffusers import FluxPipeline, FluxTransformer2DModel

from modules.families.flux.denoiser import FluxDenoiser, image_position_ids, pack_latents, unpack_latents


def _transformer(guidance: bool) -> FluxTransformer2DModel:
    torch.manual_seed(0)
    model = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                   attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                   pooled_projection_dim=24, guidance_embeds=guidance, axes_dims_rope=(4, 6, 6))
    return model.eval()


def test_packing_round_trips_and_matches_diffusers_layout() -> None:
    latents = torch.randn(2, 16, 6, 8)
    packed = pack_latents(latents)
    assert packed.shape == (2, 12, 64)
    assert torch.equal(packed, FluxPipeline._pack_latents(latents, 2, 16, 6, 8))
    assert torch.equal(unpack_latents(packed, 6, 8), latents)
    ids = image_position_ids(6, 8, torch.device("cpu"), torch.float32)
    assert torch.equal(ids, FluxPipeline._prepare_latent_image_ids(2, 3, 4, "cpu", torch.float32))


@pytest.mark.parametrize("guidance", [True, False])
def test_the_adapter_calls_the_transformer_as_the_flux_pipeline_does(guidance: bool) -> None:
    transformer = _transformer(guidance)
    sample, text, pooled = torch.randn(2, 16, 4, 4), torch.randn(2, 7, 32), torch.randn(2, 24)
    timestep = torch.tensor(750.0)
    with torch.no_grad():
        (got,) = FluxDenoiser(transformer, distilled_guidance=3.5)(sample, timestep, text,
                                                                  added_cond_kwargs={"text_embeds": pooled})
        want = transformer(hidden_states=FluxPipeline._pack_latents(sample, 2, 16, 4, 4), encoder_hidden_states=text,
                           pooled_projections=pooled, timestep=torch.full((2,), 0.75),
                           guidance=torch.full((2,), 3.5) if guidance else None,
                           img_ids=FluxPipeline._prepare_latent_image_ids(2, 2, 2, "cpu", torch.float32),
                           txt_ids=torch.zeros(7, 3), return_dict=False)[0]
    assert got.shape == sample.shape
    assert torch.allclose(got, FluxPipeline._unpack_latents(want, 32, 32, 8), atol=1e-6)


def test_distilled_guidance_changes_the_prediction_only_on_models_that_have_it() -> None:
    sample, text, pooled = torch.randn(1, 16, 4, 4), torch.randn(1, 5, 32), {"text_embeds": torch.randn(1, 24)}
    t = torch.tensor(500.0)
    with torch.no_grad():
        dev = _transformer(True)
        low, high = (FluxDenoiser(dev, g)(sample, t, text, added_cond_kwargs=pooled)[0] for g in (1.0, 6.0))
        assert not torch.allclose(low, high)
        schnell = FluxDenoiser(_transformer(False), 6.0)
        assert schnell.distilled_guidance is None
    with pytest.raises(ValueError, match="pooled CLIP-L"):
        schnell(sample, t, text)
