"""UI handlers called as plain functions: payload building, token counts, progress, PNG info."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from modules.processing.jobs.queue import JobStatus
from modules.ui.png_info import read_infotext, txt2img_values_from_infotext
from modules.ui.progress import progress_html
from modules.ui.txt2img import PAYLOAD_FIELDS, payload_from_values, token_count


def test_payload_uses_a1111_names_and_whole_numbers() -> None:
    values = ("a cat", "", "Euler a", "Automatic", 20.0, 512.0, 768.0, 2.0, 1.0, 7.5, 3.5, -1.0, -1.0, 0.0, 0.0,
              0.0, ["my style"])
    payload = payload_from_values(values)
    assert list(payload) == list(PAYLOAD_FIELDS)
    assert payload["steps"] == 20 and isinstance(payload["steps"], int)
    assert payload["height"] == 768 and payload["n_iter"] == 2 and payload["cfg_scale"] == 7.5
    assert payload["distilled_cfg_scale"] == 3.5
    assert payload["styles"] == ["my style"]


def test_token_counter_counts_clip_tokens_in_75_token_chunks() -> None:
    assert token_count("") == "0/75"
    assert token_count("a photo of a cat") == "5/75"
    assert token_count("cat " * 80) == "80/150"


def test_progress_bar_escapes_error_text() -> None:
    status = JobStatus(job_id="j", state="failed", position=None, error="<script>alert(1)</script>",
                       error_kind="invalid_request")  # a message clients see in full
    html_text = progress_html(status)
    assert "<script>" not in html_text and "&lt;script&gt;" in html_text
    queued = progress_html(JobStatus(job_id="j", state="queued", position=3))
    assert "position 3" in queued
    running = progress_html(JobStatus(job_id="j", state="running", position=0, step=5, total_steps=20,
                                      batch_count=1, fraction=0.25, eta_s=75.0))
    assert "step 5/20" in running and "ETA 1:15" in running and "width:25.0%" in running


def _png_with(tmp_path: Path, text: str | None) -> Path:
    info = PngImagePlugin.PngInfo()
    if text is not None:
        info.add_text("parameters", text)
    path = tmp_path / "img.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


def test_png_info_reads_and_parses_infotext(tmp_path: Path) -> None:
    text = "a cat, <b>bold</b>\nNegative prompt: dog\nSteps: 12, Sampler: Euler a, CFG scale: 5, Seed: 7, Size: 64x96"
    raw, fields = read_infotext(_png_with(tmp_path, text))
    assert raw == text
    assert fields["Prompt"] == "a cat, <b>bold</b>" and fields["Steps"] == "12"
    values = txt2img_values_from_infotext(raw)
    assert (values["steps"], values["seed"], values["width"], values["height"]) == (12, 7, 64, 96)
    assert values["sampler_name"] == "Euler a" and values["negative_prompt"] == "dog"


def test_png_info_of_an_image_without_parameters(tmp_path: Path) -> None:
    assert read_infotext(_png_with(tmp_path, None)) == ("", {})
    assert read_infotext(None) == ("", {})


def test_png_info_rejects_non_images(tmp_path: Path) -> None:
    import gradio as gr

    bogus = tmp_path / "x.png"
    bogus.write_bytes(b"not an image")
    with pytest.raises(gr.Error):
        read_infotext(bogus)
