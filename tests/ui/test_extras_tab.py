"""The Extras tab's handler: each mode reaches the studio and errors name the field."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

from modules.studio import Studio
from modules.ui.extras import extras_payload, run_extras_job
from tests.hostile_images import encoded, one_colour_png, truncated_png
from tests.studio_fixtures import data_dir, studio

__all__ = ["data_dir", "studio"]

SCALE_BY_2 = extras_payload("Scale by", 2, 512, 512, True, "Lanczos", "None", 0)


def test_single_image_and_uploaded_batch(studio: Studio, tmp_path: Path) -> None:
    images, info = run_extras_job(studio, "Single Image", Image.new("RGB", (20, 10), "red"), None, "", "", SCALE_BY_2)
    assert [i.size for i in images] == [(40, 20)] and "Postprocess upscale by: 2" in info
    files = []
    for name, size in (("a.png", (8, 8)), ("b.png", (16, 8))):
        Image.new("RGB", size, "blue").save(tmp_path / name)
        files.append(str(tmp_path / name))
    (tmp_path / "notes.txt").write_text("not an image")
    images, _ = run_extras_job(studio, "Batch Process", None, files, "", "", SCALE_BY_2)
    assert [i.size for i in images] == [(16, 16), (32, 16)]


def test_directory_mode_writes_into_the_output_folder(studio: Studio, tmp_path: Path) -> None:
    source, target = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    Image.new("RGB", (10, 10), "green").save(source / "x.png")
    payload = extras_payload("Scale to", 1, 96, 64, True, "Nearest", "None", 0)
    images, _ = run_extras_job(studio, "Batch from Directory", None, None, str(source), str(target), payload)
    assert [i.size for i in images] == [(96, 64)] and len(list(target.glob("*-x.png"))) == 1


@pytest.mark.parametrize(("mode", "payload", "message"), [
    ("Single Image", extras_payload("Scale by", 2, 512, 512, True, "4x-missing", "None", 0), "upscaler_1"),
    ("Single Image", SCALE_BY_2, "image: no image"),
    ("Batch from Directory", SCALE_BY_2, "input_dir"),
])
def test_errors_name_the_field(studio: Studio, mode: str, payload: dict, message: str) -> None:
    image = Image.new("RGB", (8, 8)) if "upscaler" in message else None
    with pytest.raises(gr.Error, match=message):
        run_extras_job(studio, mode, image, None, "/no/such/folder", "", payload)


def test_uploads_are_files_checked_from_their_header_before_decoding(studio: Studio, tmp_path: Path) -> None:
    (tmp_path / "ok.png").write_bytes(encoded(Image.new("RGB", (8, 4), "red")))
    (tmp_path / "big.png").write_bytes(one_colour_png(5000, 5000))
    (tmp_path / "cut.png").write_bytes(truncated_png())
    images, _ = run_extras_job(studio, "Single Image", str(tmp_path / "ok.png"), None, "", "", SCALE_BY_2)
    assert [i.size for i in images] == [(16, 8)]
    for name, message in (("big.png", "5000x5000"), ("cut.png", "truncated")):
        with pytest.raises(gr.Error, match=message) as caught:
            run_extras_job(studio, "Single Image", str(tmp_path / name), None, "", "", SCALE_BY_2)
        assert str(tmp_path) not in str(caught.value)
    files = [str(tmp_path / n) for n in ("big.png", "ok.png", "cut.png")]
    images, _ = run_extras_job(studio, "Batch Process", None, files, "", "", SCALE_BY_2)
    assert [i.size for i in images] == [(16, 8)]  # the refused ones are skipped with a warning


def test_an_upscale_over_the_output_limit_is_refused_in_the_tab(studio: Studio) -> None:
    payload = extras_payload("Scale by", 8, 512, 512, True, "Lanczos", "None", 0)
    with pytest.raises(gr.Error, match="upscaling_resize"):
        run_extras_job(studio, "Single Image", Image.new("L", (2048, 2048)), None, "", "", payload)
