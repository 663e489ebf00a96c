"""FLUX.1's autoencoder: 16 latent channels, 8x downsampling, and its latent scale and shift.

BFL's ``ae.safetensors`` uses the LDM key layout (``encoder.down.N.block.M.*``,
``decoder.up.N.*``, ``encoder.mid.attn_1.*``) with no ``quant_conv``; all-in-one checkpoints put
the same keys under ``vae.``. It loads into diffusers' ``AutoencoderKL`` with a config read from
the shapes, the keys renamed by diffusers' public ``convert_ldm_vae_checkpoint``. A diffusers
FLUX folder's ``vae/`` loads as it is.

The transformer works on ``(z - shift) * scale`` where ``z`` is the autoencoder's latent:
scale 0.3611 and shift 0.1159, from BFL's reference code (``flux/autoencoder.py``,
``AutoEncoderParams(scale_factor=0.3611, shift_factor=0.1159)``), the same values as the
``scaling_factor`` / ``shift_factor`` of FLUX.1-dev's diffusers ``vae/config.json``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from modules.families.flux.weights import PartTensors, open_part, resolve_prefix
from modules.models.files import ModelFileError

__all__ = ["FLUX_LATENT_CHANNELS", "FLUX_VAE_SCALE", "FLUX_VAE_SHIFT", "VAE_PROBE_KEY", "decode_latents",
           "encode_images", "load_flux_vae", "load_flux_vae_folder", "vae_config_from_shapes"]

FLUX_LATENT_CHANNELS = 16
FLUX_VAE_SCALE = 0.3611
FLUX_VAE_SHIFT = 0.1159
#: A key every LDM-layout autoencoder has (after its prefix).
VAE_PROBE_KEY = "decoder.conv_in.weight"
# GroupNorm groups: not visible in any shape; 32 in every SD and FLUX autoencoder.
_NORM_GROUPS = 32
_DOWN = re.compile(r"encoder\.down\.(\d+)\.")
_WHAT = "FLUX autoencoder"


def _count(part: PartTensors, pattern: str) -> int:
    found = {int(m.group(1)) for m in map(re.compile(pattern).match, part.names) if m}
    return 1 + max(found) if found else 0


def vae_config_from_shapes(part: PartTensors) -> dict[str, Any]:
    """The ``AutoencoderKL`` config (a dict) for the LDM-layout autoencoder in ``part``.

    Raises:
        ModelFileError: a tensor the config needs is missing.
    """
    _, in_channels, _, _ = part.require("encoder.conv_in.weight", _WHAT)
    _, latent_channels, _, _ = part.require(VAE_PROBE_KEY, _WHAT)
    out_channels = part.require("decoder.conv_out.weight", _WHAT)[0]
    blocks = _count(part, _DOWN.pattern)
    widths = [part.require(f"encoder.down.{i}.block.0.conv2.weight", _WHAT)[0] for i in range(blocks)]
    layers = _count(part, r"encoder\.down\.0\.block\.(\d+)\.")
    return {
        "in_channels": in_channels, "out_channels": out_channels, "latent_channels": latent_channels,
        "down_block_types": ["DownEncoderBlock2D"] * blocks, "up_block_types": ["UpDecoderBlock2D"] * blocks,
        "block_out_channels": widths, "layers_per_block": layers, "act_fn": "silu", "norm_num_groups": _NORM_GROUPS,
        "sample_size": 1024, "scaling_factor": FLUX_VAE_SCALE, "shift_factor": FLUX_VAE_SHIFT, "force_upcast": True,
        "use_quant_conv": part.shape("quant_conv.weight") is not None,
        "use_post_quant_conv": part.shape("post_quant_conv.weight") is not None,
        "mid_block_add_attention": part.shape("encoder.mid.attn_1.q.weight") is not None,
    }


def load_flux_vae(path: Path | str, prefix: str | None = None, dtype: torch.dtype = torch.float32,
                  device: torch.device | str = "cpu") -> Any:
    """Load the FLUX autoencoder from ``ae.safetensors`` (or an all-in-one checkpoint's ``vae.*``).

    Args:
        prefix: the part's key prefix (``"vae."``); None finds it.

    Returns:
        A diffusers ``AutoencoderKL`` in eval mode, its ``config.scaling_factor`` / ``shift_factor``
        set to FLUX's.

    Raises:
        ModelFileError: the file is broken, not an autoencoder, or not a 16-channel one.
    """
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    path = Path(path)
    with open_part(path, resolve_prefix(path, prefix, VAE_PROBE_KEY, "an autoencoder"), device) as part:
        config = vae_config_from_shapes(part)
        if config["latent_channels"] != FLUX_LATENT_CHANNELS:
            raise ModelFileError(path, "unsupported", f"is a {config['latent_channels']}-channel VAE (SD1.x/SDXL); "
                                 f"FLUX.1 needs its {FLUX_LATENT_CHANNELS}-channel ae.safetensors")
        ldm = part.stream([name for name in part.names if name.startswith(("encoder.", "decoder.", "quant_conv.",
                                                                            "post_quant_conv."))],
                          lambda _name: dtype)
    state = {name: tensor.contiguous() for name, tensor in convert_ldm_vae_checkpoint(ldm, config).items()}
    with torch.device("meta"):
        model = AutoencoderKL(**config)
    missing = sorted(set(model.state_dict()) - set(state))
    if missing:
        raise ModelFileError(path, "incomplete", f"lacks {len(missing)} {_WHAT} tensors (first, as diffusers "
                             f"names it: {missing[0]})")
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def load_flux_vae_folder(folder: Path | str, dtype: torch.dtype = torch.float32,
                         device: torch.device | str = "cpu") -> Any:
    """Load the autoencoder of a diffusers FLUX folder's ``vae/`` (config.json + weights)."""
    from diffusers import AutoencoderKL

    model = AutoencoderKL.from_pretrained(str(folder), torch_dtype=dtype, local_files_only=True)
    return model.to(device).eval().requires_grad_(False)


@torch.no_grad()
def encode_images(vae: Any, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Images ``[batch, 3, H, W]`` in [-1, 1] -> transformer latents ``[batch, 16, H/8, W/8]``,
    ``(z - shift) * scale``; ``z`` is the posterior's mean, or a sample drawn with ``generator``."""
    posterior = vae.encode(images.to(vae.device, vae.dtype)).latent_dist
    z = posterior.sample(generator) if generator is not None else posterior.mode()
    return (z - FLUX_VAE_SHIFT) * FLUX_VAE_SCALE


@torch.no_grad()
def decode_latents(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """Transformer latents ``[batch, 16, h, w]`` -> images ``[batch, 3, 8h, 8w]``, about [-1, 1]."""
    z = latents.to(vae.device, vae.dtype) / FLUX_VAE_SCALE + FLUX_VAE_SHIFT
    return vae.decode(z).sample
