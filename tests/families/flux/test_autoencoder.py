"""FLUX's autoencoder loads from BFL's ae.safetensors, an all-in-one file's ``vae.*`` and a
diffusers ``vae/`` folder, and maps images to latents with FLUX's scale and shift."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modules.families.flux.autoencoder import (
    FLUX_VAE_SCALE,
    FLUX_VAE_SHIFT,
    decode_latents,
    encode_images,
    load_flux_vae,
    load_flux_vae_folder,
)
from modules.models.files import ModelFileError
from tests.families.flux.tiny_flux_parts import VAE_PREFIX, TinyFluxParts, write_tiny_flux_parts


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> TinyFluxParts:
    return write_tiny_flux_parts(tmp_path_factory.mktemp("flux_models"))


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 3, 64, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_latent_scale_and_shift_are_bfls() -> None:
    assert (FLUX_VAE_SCALE, FLUX_VAE_SHIFT) == (0.3611, 0.1159)


@pytest.mark.parametrize("source", ["ae.safetensors", "all-in-one"])
def test_ae_file_encodes_and_decodes_as_the_model_it_was_saved_from(parts: TinyFluxParts, images: torch.Tensor,
                                                                    source: str) -> None:
    path, prefix = (parts.ae_file, None) if source == "ae.safetensors" else (parts.all_in_one, VAE_PREFIX)
    vae = load_flux_vae(path, prefix)
    config = vae.config
    assert config.latent_channels == 16 and not config.use_quant_conv and not config.use_post_quant_conv
    assert list(config.block_out_channels) == [32, 32, 32, 32] and config.layers_per_block == 1
    assert (config.scaling_factor, config.shift_factor) == (FLUX_VAE_SCALE, FLUX_VAE_SHIFT)
    latents = encode_images(vae, images)
    assert latents.shape == (2, 16, 8, 6)
    z = parts.vae.encode(images).latent_dist.mode()
    torch.testing.assert_close(latents, (z - 0.1159) * 0.3611, rtol=0, atol=1e-6)
    decoded = decode_latents(vae, latents)
    assert decoded.shape == (2, 3, 64, 48)
    torch.testing.assert_close(decoded, parts.vae.decode(z).sample, rtol=0, atol=1e-5)


def test_sampled_latents_follow_the_generator(parts: TinyFluxParts, images: torch.Tensor) -> None:
    vae = load_flux_vae(parts.ae_file)
    first = encode_images(vae, images, torch.Generator().manual_seed(5))
    again = encode_images(vae, images, torch.Generator().manual_seed(5))
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.allclose(first, encode_images(vae, images))


def test_diffusers_vae_folder_loads(parts: TinyFluxParts, images: torch.Tensor, tmp_path: Path) -> None:
    parts.vae.save_pretrained(tmp_path / "vae")
    vae = load_flux_vae_folder(tmp_path / "vae")
    torch.testing.assert_close(encode_images(vae, images), encode_images(load_flux_vae(parts.ae_file), images),
                               rtol=0, atol=1e-6)


def test_an_sd_vae_or_a_non_vae_is_refused(parts: TinyFluxParts, tmp_path: Path) -> None:
    sd_vae = {"decoder.conv_in.weight": torch.zeros(32, 4, 3, 3), "encoder.conv_in.weight": torch.zeros(32, 3, 3, 3),
              "decoder.conv_out.weight": torch.zeros(3, 32, 3, 3), "encoder.down.0.block.0.conv2.weight":
              torch.zeros(32, 32, 3, 3)}
    save_file(sd_vae, tmp_path / "sd_vae.safetensors")
    with pytest.raises(ModelFileError, match="4-channel VAE"):
        load_flux_vae(tmp_path / "sd_vae.safetensors")
    with pytest.raises(ModelFileError, match="not an autoencoder"):
        load_flux_vae(parts.clip_file)
