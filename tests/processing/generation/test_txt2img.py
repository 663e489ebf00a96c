"""txt2img end to end on every family's tiny model: outputs, progress, previews, tiling."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from modules.models.loader import LoadedModel
from modules.processing.generation.txt2img import OutputOptions, run_txt2img
from modules.processing.jobs.job import Job, ProgressUpdate
from modules.processing.requests import Txt2ImgRequest
from modules.processing.sampling.preview import latents_to_preview


def _request(**fields: object) -> Txt2ImgRequest:
    base = {"prompt": "a small yellow star", "width": 64, "height": 64, "num_inference_steps": 3, "seed": 9}
    base.update(fields)
    return Txt2ImgRequest(**base)


def test_sdxl_generates_deterministically(sdxl_model: LoadedModel) -> None:
    first = run_txt2img(sdxl_model, Job(_request(width=64, height=96)))
    second = run_txt2img(sdxl_model, Job(_request(width=64, height=96)))
    assert first.images[0].size == (64, 96)
    assert np.array_equal(np.asarray(first.images[0]), np.asarray(second.images[0]))
    assert "Model: tiny-sdxl" in first.infotexts[0]


def test_prompt_changes_the_image(sd15_model: LoadedModel) -> None:
    one = run_txt2img(sd15_model, Job(_request(prompt="a red circle")))
    two = run_txt2img(sd15_model, Job(_request(prompt="a blue square")))
    assert not np.array_equal(np.asarray(one.images[0]), np.asarray(two.images[0]))


def test_progress_reports_every_step_with_eta(sd15_model: LoadedModel) -> None:
    updates: list[ProgressUpdate] = []
    run_txt2img(sd15_model, Job(_request(batch_count=2), on_progress=updates.append))
    assert [(u.batch_index, u.step) for u in updates] == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]
    assert updates[-1].fraction == 1.0 and updates[-1].eta_s == 0.0
    assert all(u.total_steps == 3 for u in updates)
    fractions = [u.fraction for u in updates]
    assert fractions == sorted(fractions)


def test_preview_is_cheap_rgb_at_latent_size() -> None:
    latents = torch.randn(2, 4, 8, 12)
    preview = latents_to_preview(latents, "sd15", index=1)
    assert isinstance(preview, Image.Image) and preview.size == (12, 8) and preview.mode == "RGB"
    assert latents_to_preview(latents, "sdxl").size == (12, 8)


def test_saves_to_dated_folder_with_infotext(sd15_model: LoadedModel, outputs_dir) -> None:
    result = run_txt2img(sd15_model, Job(_request(batch_size=2)), OutputOptions(outputs_dir / "txt2img-images"))
    assert [p.name.split("-", 1)[1] for p in result.paths] == ["9.png", "10.png"]
    assert result.paths[0].parent.parent == outputs_dir / "txt2img-images"
    assert Image.open(result.paths[1]).info["parameters"] == result.infotexts[1]


def test_tiling_wraps_edges_and_restores_the_model(sd15_model: LoadedModel) -> None:
    plain = run_txt2img(sd15_model, Job(_request()))
    tiled = run_txt2img(sd15_model, Job(_request(tiling=True)))
    assert not np.array_equal(np.asarray(plain.images[0]), np.asarray(tiled.images[0]))
    assert "Tiling: True" in tiled.infotexts[0]
    convs = [m for m in sd15_model.pipeline.unet.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(conv.padding_mode == "zeros" for conv in convs)
    again = run_txt2img(sd15_model, Job(_request()))
    assert np.array_equal(np.asarray(plain.images[0]), np.asarray(again.images[0]))


def test_inpainting_model_generates_from_text(tmp_path) -> None:
    from modules.models.hashing import HashCache
    from modules.models.manager import ModelManager
    from modules.models.registry import CheckpointRegistry
    from tests.conftest import CPU_FP32
    from tests.tiny_models import write_tiny_checkpoint

    write_tiny_checkpoint(tmp_path, "sd15_inpaint")
    manager = ModelManager(CheckpointRegistry([tmp_path], HashCache(tmp_path / "h.json")), CPU_FP32)
    model = manager.get("tiny-sd15_inpaint")
    assert model.pipeline.unet.config.in_channels == 9
    result = run_txt2img(model, Job(_request()))
    assert result.images[0].size == (64, 64)
