"""The training script's machinery on a plan of a few steps: export, load, resume, reproducibility."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modules.demo.evaluation import load_checkpoint_in
from modules.demo.export import export_checkpoint
from modules.demo.training import TrainingPlan, _vae_batch, train, training_noise
from modules.models.loader import build_clip_tokenizer
from modules.processing.generation.txt2img import run_txt2img
from modules.processing.jobs.job import Job
from modules.processing.requests import Txt2ImgRequest
from tests.conftest import CPU_FP32

TINY_PLAN = TrainingPlan(vae_steps=3, vae_batch=2, vae_crop=32, scenes=16, unet_steps=4, unet_batch=4,
                         warmup_steps=1, save_every=2)


class _Bar:
    """A silent progress bar that can simulate Ctrl-C after ``stop_after`` updates."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.updates, self.stop_after = 0, stop_after

    def update(self, n: int) -> None:
        self.updates += n
        if self.stop_after is not None and self.updates >= self.stop_after:
            raise KeyboardInterrupt

    def set_postfix(self, **_: object) -> None:
        pass

    def close(self) -> None:
        pass


def _quiet(total: int, initial: int, name: str) -> _Bar:
    return _Bar()


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def tokenizer():
    return build_clip_tokenizer()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tokenizer):
    return train(TINY_PLAN, tmp_path_factory.mktemp("work"), tokenizer, _quiet)


def test_every_step_draws_its_own_batch() -> None:
    # Steps whose numbers share a prefix once drew the same scenes; each step must differ.
    plan = TrainingPlan(vae_batch=2, vae_crop=32)
    batches = [_vae_batch(plan, step) for step in range(1000, 1012)]
    assert len({batch.numpy().tobytes() for batch in batches}) == len(batches)
    assert torch.equal(_vae_batch(plan, 1005), batches[5])  # and the same step draws the same batch


def _spatial_mean_std(noise: torch.Tensor) -> float:
    """How far one image's noise, averaged over its pixels, strays from 0 (std over images)."""
    return noise.mean(dim=(2, 3)).std().item()


def test_training_noise_hides_the_mean_a_16x16_latent_leaks() -> None:
    shape = (512, 4, 16, 16)
    plain = training_noise(shape, torch.Generator().manual_seed(0))
    offset = training_noise(shape, torch.Generator().manual_seed(0), offset=0.15)
    assert plain.shape == offset.shape == shape
    # i.i.d. noise averages out to std 1/16 over 256 pixels; the offset keeps sqrt(1/256 + 0.15^2).
    assert _spatial_mean_std(plain) == pytest.approx(1 / 16, rel=0.15)
    assert _spatial_mean_std(offset) == pytest.approx((1 / 256 + 0.15**2) ** 0.5, rel=0.15)
    assert torch.equal(offset, training_noise(shape, torch.Generator().manual_seed(0), offset=0.15))


def test_multi_resolution_noise_hides_layout_at_every_scale() -> None:
    shape = (256, 4, 16, 16)
    plain = training_noise(shape, torch.Generator().manual_seed(0))
    pyramid = training_noise(shape, torch.Generator().manual_seed(0), pyramid_discount=0.7)
    assert pyramid.shape == shape
    assert pyramid.std().item() == pytest.approx(1.0, abs=0.02)  # the schedule's noise level still holds
    # Means over 4x4, 8x8 and 16x16 latent blocks (a small shape, a large one, the background)
    # vary more the coarser the block: i.i.d. noise would shrink them by 1/4, 1/8, 1/16.
    ratios = [torch.nn.functional.avg_pool2d(pyramid, block).std().item()
              / torch.nn.functional.avg_pool2d(plain, block).std().item() for block in (4, 8, 16)]
    assert ratios == sorted(ratios) and ratios[0] > 1.5, ratios


def test_export_loads_through_the_registry_and_generates(trained, tmp_path: Path) -> None:
    path = export_checkpoint(trained, tmp_path / "demo")
    assert path.stat().st_size < 25 * 2**20
    model = load_checkpoint_in(tmp_path / "demo", CPU_FP32)
    assert model.family.id == "sd15" and model.info.name == "aigen-demo-v2"
    assert model.pipeline.vae.config.scaling_factor == pytest.approx(trained.vae.config.scaling_factor)
    request = Txt2ImgRequest(prompt="a red circle", sampler_name="Euler a", num_inference_steps=2, seed=1,
                             width=128, height=128)
    result = run_txt2img(model, Job(request))
    assert result.images[0].size == (128, 128)
    assert "Model: aigen-demo-v2" in result.infotexts[0]


def test_same_seed_trains_the_same_weights(trained, tmp_path: Path, tokenizer) -> None:
    again = train(TINY_PLAN, tmp_path, tokenizer, _quiet)
    for ours, theirs in ((trained.unet, again.unet), (trained.text_encoder, again.text_encoder),
                         (trained.vae, again.vae)):
        for key, value in _weights(ours).items():
            assert torch.equal(value, theirs.state_dict()[key]), key


def test_interrupted_run_resumes_to_the_same_weights(trained, tmp_path: Path, tokenizer) -> None:
    def interrupt_unet(total: int, initial: int, name: str) -> _Bar:
        # Ctrl-C during the third UNet step; the state saved after step 2 survives.
        return _Bar(stop_after=3) if name == "UNet" and initial == 0 else _Bar()

    with pytest.raises(KeyboardInterrupt):
        train(TINY_PLAN, tmp_path, tokenizer, interrupt_unet)
    assert torch.load(tmp_path / "unet_state.pt", weights_only=True)["step"] == 2
    resumed = train(TINY_PLAN, tmp_path, tokenizer, _quiet)
    for key, value in _weights(trained.unet).items():
        assert torch.equal(value, resumed.unet.state_dict()[key]), key
