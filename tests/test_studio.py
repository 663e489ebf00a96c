"""The studio service behind every front end: settings feed jobs, never the other way round."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from modules.app import build_app_context
from modules.processing.errors import ProcessingError, RequestValidationError
from modules.settings import SettingsStore
from modules.studio import Studio
from tests.studio_fixtures import data_dir

__all__ = ["data_dir"]  # the fixture, used by name


def _studio(data_dir: Path) -> Studio:
    args = argparse.Namespace(data_dir=data_dir, ckpt_dir=[], precision="fp32", no_half=False, device="cpu",
                              allow_pickle=False)
    context = build_app_context(args)
    return Studio(context, SettingsStore(data_dir / "config.json"))


@pytest.fixture
def studio(data_dir: Path) -> Iterator[Studio]:
    service = _studio(data_dir)
    yield service
    service.close()


def _generate(studio: Studio, **payload: object):
    job_id = studio.submit_txt2img({"prompt": "x", "steps": 2, "width": 64, "height": 64, "seed": 5, **payload})
    status = studio.wait(job_id, timeout=120)
    assert status.state == "done", status.error
    return status.result


def test_settings_fill_requests_and_place_outputs(studio: Studio, data_dir: Path) -> None:
    studio.update_settings({"CLIP_stop_at_last_layers": 2, "outdir_txt2img_samples": "mine", "save_to_dirs": False})
    result = _generate(studio)
    assert "Clip skip: 2" in result.infotexts[0]
    assert result.paths[0].parent == data_dir / "mine"
    assert Image.open(result.paths[0]).info["parameters"] == result.infotexts[0]
    explicit = _generate(studio, override_settings={"CLIP_stop_at_last_layers": 1})
    assert "Clip skip" not in explicit.infotexts[0]
    assert studio.settings.CLIP_stop_at_last_layers == 2  # a request never changes the settings


def test_output_folder_cannot_leave_the_data_dir(studio: Studio) -> None:
    warnings = studio.update_settings({"outdir_txt2img_samples": "../../etc"})
    assert warnings and studio.settings.outdir_txt2img_samples == ""


def test_bad_payload_is_refused_before_queueing(studio: Studio) -> None:
    with pytest.raises(RequestValidationError, match="steps"):
        studio.submit_txt2img({"prompt": "x", "steps": 0})
    assert studio.queue.pending_ids() == []


def test_corrupt_config_starts_with_defaults_and_a_warning(data_dir: Path) -> None:
    (data_dir / "config.json").write_text('{"samples_save": tr', encoding="utf-8")
    service = _studio(data_dir)
    try:
        from modules.ui.app import _warning_banner

        assert service.settings_warnings
        assert "config.json" in _warning_banner(service)
        assert service.settings.samples_save is True
    finally:
        service.close()


def test_checkpoint_choice_is_persisted(studio: Studio, data_dir: Path) -> None:
    title = studio.set_checkpoint("tiny-sd15")
    assert title.startswith("tiny-sd15.safetensors [")
    assert _studio(data_dir).settings.sd_model_checkpoint == title


def test_interrupting_an_unknown_or_idle_job_is_a_no_op(studio: Studio) -> None:
    assert studio.interrupt() is False and studio.skip() is False
    assert studio.interrupt("stale-id") is False and studio.skip("stale-id") is False


def test_styles_expand_into_the_prompt_that_is_recorded(studio: Studio) -> None:
    from modules.processing.prompts.styles import PromptStyle

    studio.styles.save(PromptStyle("Art", "oil painting, {prompt}", "blurry"))
    result = _generate(studio, prompt="a cat", styles=["Art"])
    assert result.infotexts[0].startswith("oil painting, a cat\nNegative prompt: blurry\n")
    # A style this install lacks (a client of another install named it) is a notice, not an error.
    missing = studio.wait(studio.submit_txt2img({"prompt": "x", "styles": ["Missing"], "steps": 1, "width": 64,
                                                 "height": 64})).result
    assert any("'Missing'" in notice for notice in missing.notices)
    with pytest.raises(RequestValidationError, match="styles"):
        studio.submit_txt2img({"prompt": "x", "styles": "Art"})


def test_default_size_follows_the_checkpoint(studio: Studio, tmp_path: Path) -> None:
    assert studio.family_defaults().size == 64  # the tiny fixture: 8x8 latents, 8x VAE
    fresh = _studio(tmp_path / "fresh")  # no checkpoint of its own: the shipped demo model
    try:
        assert fresh.current_checkpoint().startswith("aigen-demo-v2")
        assert fresh.family_defaults().size == 128
    finally:
        fresh.close()


def test_img2img_jobs_share_the_queue_and_save_to_their_own_folder(studio: Studio, data_dir: Path) -> None:
    source = Image.new("RGB", (64, 64), (200, 30, 30))
    mask = Image.new("L", (64, 64), 0)
    job_id = studio.submit_img2img({"prompt": "x", "steps": 2, "width": 64, "height": 64, "seed": 3,
                                    "init_images": [source], "mask": mask})
    status = studio.wait(job_id, timeout=120)
    assert status.state == "done", status.error
    assert status.result.notices and status.result.images[0].getpixel((5, 5)) == (200, 30, 30)
    assert status.result.paths[0].parent.parent == data_dir / "outputs" / "img2img-images"
    with pytest.raises(RequestValidationError) as error:
        studio.submit_img2img({"init_images": [source], "denoising_strength": 2})
    assert error.value.field == "denoising_strength"


def test_batch_from_a_folder_uses_masks_by_name_and_writes_the_output_folder(studio: Studio, tmp_path: Path) -> None:
    inputs, masks, out = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
    inputs.mkdir()
    masks.mkdir()
    Image.new("RGB", (64, 64), (10, 200, 10)).save(inputs / "a.png")
    Image.new("RGB", (64, 64), (10, 10, 200)).save(inputs / "b.jpg")
    (inputs / "notes.txt").write_text("not an image")
    Image.new("L", (64, 64), 0).save(masks / "a.png")  # empty mask: "a" comes back unchanged
    job_id = studio.submit_img2img_batch({"prompt": "x", "steps": 2, "width": 64, "height": 64, "seed": 1},
                                         str(inputs), str(out), str(masks))
    status = studio.wait(job_id, timeout=120)
    assert status.state == "done", status.error
    result = status.result
    assert len(result.images) == 2 and sorted(p.parent for p in result.paths) == [out, out]
    assert result.images[0].getpixel((3, 3)) == (10, 200, 10) and result.notices
    with pytest.raises(RequestValidationError) as error:
        studio.submit_img2img_batch({}, str(tmp_path / "missing"))
    assert error.value.field == "input_dir"


def test_batch_from_a_folder_is_off_when_the_server_is_exposed(data_dir: Path) -> None:
    args = argparse.Namespace(data_dir=data_dir, ckpt_dir=[], precision="fp32", no_half=False, device="cpu",
                              allow_pickle=False, share=True)
    service = Studio(build_app_context(args), SettingsStore(data_dir / "config.json"))
    try:
        with pytest.raises(ProcessingError, match="enable-insecure-extension-access"):
            service.submit_img2img_batch({}, str(data_dir))
    finally:
        service.close()


def test_hires_fix_through_the_studio_uses_its_upscalers_and_refuses_unknown_ones(studio: Studio) -> None:
    job_id = studio.submit_txt2img({"prompt": "x", "steps": 2, "width": 64, "height": 64, "seed": 3,
                                    "enable_hr": True, "hr_upscaler": "Lanczos", "hr_scale": 1.5,
                                    "denoising_strength": 0.5})
    status = studio.wait(job_id, timeout=120)
    assert status.state == "done", status.error
    assert status.result.images[0].size == (96, 96) and "Hires upscaler: Lanczos" in status.result.infotexts[0]
    assert studio.hires_upscalers()[:2] == ["Latent", "Latent (antialiased)"] and "Nearest" in studio.hires_upscalers()
    with pytest.raises(RequestValidationError) as error:
        studio.submit_txt2img({"prompt": "x", "enable_hr": True, "hr_upscaler": "4x-missing"})
    assert error.value.field == "hr_upscaler"


def test_jobs_are_recorded_and_survive_a_restart(data_dir: Path) -> None:
    args = argparse.Namespace(data_dir=data_dir, ckpt_dir=[], precision="fp32", no_half=False, device="cpu",
                              allow_pickle=False)
    first = Studio(build_app_context(args), SettingsStore(data_dir / "config.json"))
    done_id = first.submit_txt2img({"prompt": "x", "steps": 1, "width": 64, "height": 64})
    assert first.wait(done_id, timeout=120).state == "done"
    assert first.jobs.get(done_id).state == "done" and first.jobs.get(done_id).result["images"] == 1
    # Jobs that were waiting when the process died: written to the store as a submit would.
    waiting = [f"waiting{k}" for k in range(2)]
    for job_id in waiting:
        first.jobs.add(job_id, "txt2img", {"payload": {"prompt": job_id, "steps": 1, "width": 64, "height": 64}})
    first.jobs.add("broken", "txt2img", {"payload": {"prompt": "x", "steps": 0}})
    first.close()

    second = Studio(build_app_context(args), SettingsStore(data_dir / "config.json"))
    try:
        assert second.recovered_jobs == waiting
        for job_id in waiting:
            assert second.wait(job_id, timeout=120).state == "done"
            assert second.jobs.get(job_id).state == "done"
        assert second.jobs.get("broken").state == "failed" and "steps" in second.jobs.get("broken").error
    finally:
        second.close()
