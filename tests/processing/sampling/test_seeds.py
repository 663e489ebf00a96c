"""A1111 seed semantics: per-image CPU noise, batch invariance, variation seeds, seed resize."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.models.loader import LoadedModel
from modules.processing.generation.txt2img import run_txt2img
from modules.processing.jobs.job import Job
from modules.processing.requests import Txt2ImgRequest
from modules.processing.sampling.seeds import (
    create_initial_noise,
    generator_device,
    image_generators,
    sampler_generators,
    slerp,
)


def _images(model: LoadedModel, **fields: object) -> list[np.ndarray]:
    base = {"prompt": "a green star", "width": 64, "height": 64, "num_inference_steps": 3, "seed": 100}
    base.update(fields)
    result = run_txt2img(model, Job(Txt2ImgRequest(**base)))
    return [np.asarray(image).astype(int) for image in result.images]


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    # Batched and single UNet calls may round differently in the last bit of float32.
    return int(np.abs(a - b).max()) <= 1


@pytest.mark.parametrize("sampler", ["Euler", "Euler a", "DPM++ SDE"])
def test_same_seed_same_image_whatever_the_batch(sd15_model: LoadedModel, sampler: str) -> None:
    batched = _images(sd15_model, batch_size=2, sampler_name=sampler)
    alone = _images(sd15_model, seed=101, sampler_name=sampler)
    counted = _images(sd15_model, batch_count=2, sampler_name=sampler)
    assert _close(batched[1], alone[0])
    assert _close(counted[1], alone[0])
    assert not _close(batched[0], batched[1])


def test_random_seed_is_resolved_and_recorded(sd15_model: LoadedModel) -> None:
    request = Txt2ImgRequest(prompt="x", width=64, height=64, num_inference_steps=1, seed=-1, batch_size=2)
    result = run_txt2img(sd15_model, Job(request))
    assert result.seeds[0] >= 0 and result.seeds[1] == result.seeds[0] + 1
    assert f"Seed: {result.seeds[0]}," in result.infotexts[0]
    assert result.request.seed == result.seeds[0]


def test_variation_seed(sd15_model: LoadedModel) -> None:
    base = _images(sd15_model, sampler_name="Euler")[0]
    none = _images(sd15_model, sampler_name="Euler", subseed=7, subseed_strength=0.0)[0]
    full = _images(sd15_model, sampler_name="Euler", subseed=7, subseed_strength=1.0)[0]
    other_seed = _images(sd15_model, sampler_name="Euler", seed=7)[0]
    half = _images(sd15_model, sampler_name="Euler", subseed=7, subseed_strength=0.5)[0]
    assert np.array_equal(base, none)
    assert _close(full, other_seed)
    assert not _close(half, base) and not _close(half, other_seed)


def test_slerp_keeps_noise_norm() -> None:
    a, b = torch.randn(4, 32, 32), torch.randn(4, 32, 32)
    mixed = slerp(0.5, a, b)
    assert abs(mixed.norm() / a.norm() - 1) < 0.05
    assert torch.equal(slerp(0.0, a, b), a)


def test_seed_resize_keeps_the_centre_of_the_old_noise() -> None:
    small = create_initial_noise((4, 8, 8), image_generators([5]))
    resized = create_initial_noise((4, 12, 16), image_generators([5]), seed_resize_from=(8, 8))
    assert torch.equal(resized[0, :, 2:10, 4:12], small[0])
    cropped = create_initial_noise((4, 4, 4), image_generators([5]), seed_resize_from=(8, 8))
    assert torch.equal(cropped[0], small[0, :, 2:6, 2:6])


def test_seed_resize_to_the_same_size_changes_nothing(sd15_model: LoadedModel) -> None:
    plain = _images(sd15_model)[0]
    same = _images(sd15_model, seed_resize_from_w=64, seed_resize_from_h=64)[0]
    assert np.array_equal(plain, same)


def test_initial_noise_of_an_image_is_independent_of_its_batch() -> None:
    batch = create_initial_noise((4, 8, 8), image_generators([100, 101, 102]))
    alone = create_initial_noise((4, 8, 8), image_generators([101]))
    assert torch.equal(batch[1], alone[0])
    assert not torch.equal(batch[0], batch[1])


def test_ensd_changes_only_the_per_step_noise_of_ancestral_samplers(sd15_model: LoadedModel) -> None:
    # A1111's "Eta noise seed delta": Euler a draws its step noise from seed + delta; Euler has none.
    plain, delta = (_images(sd15_model, sampler_name="Euler a", eta_noise_seed_delta=d)[0] for d in (0, 31337))
    assert not _close(plain, delta)
    euler = [_images(sd15_model, sampler_name="Euler", eta_noise_seed_delta=d)[0] for d in (0, 31337)]
    assert np.array_equal(*euler)
    # Seed + delta is a fresh stream: the same as seeding a second generator by hand.
    generators = image_generators([5])
    step = sampler_generators([5], generators, 31337)
    by_hand = torch.Generator().manual_seed(5 + 31337)
    assert torch.equal(torch.randn(3, generator=step[0]), torch.randn(3, generator=by_hand))
    assert sampler_generators([5], generators, 0) == generators


def test_gpu_rng_source_draws_on_cuda_only() -> None:
    assert generator_device("GPU", "cpu") == torch.device("cpu")
    assert generator_device("CPU", "cuda:0") == torch.device("cpu")
    assert generator_device("GPU", "cuda:0") == torch.device("cuda:0")
    if torch.cuda.is_available():  # the device run checks that the noise really comes from the GPU's generator
        noise = create_initial_noise((4, 8, 8), image_generators([1], "cuda"))
        expected = torch.randn((4, 8, 8), generator=torch.Generator("cuda").manual_seed(1), device="cuda")
        assert torch.equal(noise[0], expected)
