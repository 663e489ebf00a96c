"""Seeds and initial noise, with A1111's semantics.

Noise is drawn from one ``torch.Generator`` per image, so a seed gives the same image whatever
the batch size. By default (A1111's "Random number generator source" CPU) the generators live on
the CPU, so a seed also gives the same image on every device; "GPU" draws on the model's CUDA
device instead, as A1111's default does, to reproduce images made there. The same generator
then feeds the sampler's own noise (ancestral and SDE samplers), unless an "Eta noise seed
delta" (ENSD) reseeds that stream with ``seed + delta``, as A1111 does.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

__all__ = ["RANDN_SOURCES", "ImageSeeds", "create_initial_noise", "generator_device", "image_generators",
           "random_seed", "resolve_seed", "sampler_generators", "slerp"]

#: A1111's "Random number generator source" choices that this engine implements ("NV", an
#: emulation of NVIDIA's Philox generator on the CPU, is not).
RANDN_SOURCES: tuple[str, ...] = ("CPU", "GPU")


def random_seed() -> int:
    """A fresh random seed in A1111's range (32-bit)."""
    return random.SystemRandom().randrange(4294967294)


def resolve_seed(seed: int) -> int:
    """-1 (or any negative) means random; anything else is kept."""
    return random_seed() if seed < 0 else seed


class ImageSeeds:
    """Seeds of every image of a job: image ``k`` uses ``seed + k`` and ``subseed + k`` (A1111)."""

    def __init__(self, seed: int, subseed: int, count: int) -> None:
        self.seed = seed
        self.subseed = subseed
        self.seeds = [seed + k for k in range(count)]
        self.subseeds = [subseed + k for k in range(count)]

    def batch(self, batch_index: int, batch_size: int) -> tuple[list[int], list[int]]:
        """Seeds and subseeds of batch ``batch_index``."""
        start = batch_index * batch_size
        return self.seeds[start : start + batch_size], self.subseeds[start : start + batch_size]


def slerp(t: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical linear interpolation between two noise tensors (Shoemake 1985).

    Keeps the result's norm like that of Gaussian noise, which a plain lerp would shrink.
    Falls back to lerp when the two are (nearly) parallel.
    """
    low_unit = low / torch.linalg.vector_norm(low)
    high_unit = high / torch.linalg.vector_norm(high)
    dot = (low_unit * high_unit).sum().clamp(-1.0, 1.0)
    if dot.abs() > 0.9995:
        return (1.0 - t) * low + t * high
    omega = torch.acos(dot)
    sin_omega = torch.sin(omega)
    return (torch.sin((1.0 - t) * omega) / sin_omega) * low + (torch.sin(t * omega) / sin_omega) * high


def _paste_centered(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Copy ``source`` (C, h, w) into the centre of ``target`` (C, H, W), cropping if larger.

    This is how A1111's "Resize seed from" keeps the composition of a seed found at one size
    when generating at another: the noise of the old size sits in the middle of the new one.
    """
    result = target.clone()
    _, height, width = target.shape
    _, src_height, src_width = source.shape
    rows = min(height, src_height)
    cols = min(width, src_width)
    top, left = max((height - src_height) // 2, 0), max((width - src_width) // 2, 0)
    src_top, src_left = max((src_height - height) // 2, 0), max((src_width - width) // 2, 0)
    result[:, top : top + rows, left : left + cols] = source[:, src_top : src_top + rows, src_left : src_left + cols]
    return result


def generator_device(randn_source: str, device: torch.device | str) -> torch.device:
    """Where noise is drawn: the CPU, or for "GPU" the model's device when it is a CUDA device
    (A1111 also stays on the CPU for other accelerators, whose generators differ)."""
    device = torch.device(device)
    return device if randn_source == "GPU" and device.type == "cuda" else torch.device("cpu")


def image_generators(seeds: Sequence[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per image on ``device``, seeded with that image's seed."""
    return [torch.Generator(device).manual_seed(seed) for seed in seeds]


def sampler_generators(seeds: Sequence[int], initial: Sequence[torch.Generator],
                       eta_noise_seed_delta: int = 0) -> list[torch.Generator]:
    """The generators a sampler draws its per-step noise from: the initial-noise generators,
    continued, or with an ENSD fresh ones seeded with ``seed + delta`` (A1111 reseeds after the
    initial noise, so ENSD changes only what ancestral samplers add at each step)."""
    if eta_noise_seed_delta == 0:
        return list(initial)
    return image_generators([seed + eta_noise_seed_delta for seed in seeds], initial[0].device if initial else "cpu")


def create_initial_noise(
    shape: tuple[int, int, int],
    generators: Sequence[torch.Generator],
    subseeds: Sequence[int] = (),
    subseed_strength: float = 0.0,
    seed_resize_from: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Initial latent noise for a batch, one image per generator.

    Args:
        shape: latent shape of one image (C, H/8, W/8).
        generators: per-image generators (see ``image_generators``); they advance, and the
            sampler keeps drawing from them afterwards. Noise is drawn on their device.
        subseeds: per-image variation seeds, used when ``subseed_strength > 0``.
        subseed_strength: 0..1; slerp weight of the variation noise.
        seed_resize_from: latent (h, w) at which the seed's noise was first drawn, or None.

    Returns:
        Float32 tensor (B, C, H/8, W/8) of unit-variance Gaussian noise, on the generators' device.
    """
    channels = shape[0]
    noise_shape = (channels, *seed_resize_from) if seed_resize_from else shape
    images = []
    for index, generator in enumerate(generators):
        subnoise = None
        if subseed_strength > 0 and subseeds:
            variation = torch.Generator(generator.device).manual_seed(subseeds[index])
            subnoise = torch.randn(noise_shape, generator=variation, device=generator.device)
        noise = torch.randn(noise_shape, generator=generator, device=generator.device)
        if subnoise is not None:
            noise = slerp(subseed_strength, noise, subnoise)
        if noise_shape != shape:
            # The rest of the canvas is the seed's own noise at the new size (A1111).
            fresh = torch.Generator(generator.device).manual_seed(generator.initial_seed())
            noise = _paste_centered(torch.randn(shape, generator=fresh, device=generator.device), noise)
        images.append(noise)
    return torch.stack(images)
