"""The results row under the gallery: which images a click means, 💾 Save, 📂 refusals."""

from __future__ import annotations

import csv
import json
import resource
import subprocess
import sys
from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

from modules.ui.open_folder import ServerBinding
from modules.ui.output_panel import (
    gallery_entries,
    launched_binding,
    open_output_folder,
    save_images,
    selected_info,
    selected_items,
)

INFO_A = "a red cat\nNegative prompt: dog\nSteps: 3, Sampler: Euler a, CFG scale: 7, Seed: 11, Size: 8x8, Model: tiny"
INFO_B = INFO_A.replace("Seed: 11", "Seed: 12")


def _gallery() -> list[tuple[Image.Image, str]]:
    # What gradio hands a handler for a gallery input: (image, caption) pairs.
    return [(Image.new("RGB", (8, 8), "red"), "Seed 11"), (Image.new("RGB", (8, 8), "blue"), "Seed 12")]


def test_selected_image_or_all_of_them() -> None:
    gallery = _gallery()
    assert [text for _, text in selected_items(gallery, [INFO_A, INFO_B], None)] == [INFO_A, INFO_B]
    ((image, text),) = selected_items(gallery, [INFO_A, INFO_B], 1)
    assert text == INFO_B and image.getpixel((0, 0)) == (0, 0, 255)
    assert len(selected_items(gallery, [INFO_A], 7)) == 2  # a stale index means "none selected"
    assert selected_items(gallery, [INFO_A], None)[1][1] == ""  # a missing infotext is empty, not an error
    assert selected_items(None, None, 0) == []


def test_save_selected_writes_log_images_and_reports_the_name(tmp_path: Path) -> None:
    folder = tmp_path / "log" / "images"
    paths, message = save_images(folder, _gallery(), [INFO_A, INFO_B], 1)
    assert [p.name for p in paths] == ["00000-12.png"] and message == "<p>Saved: 00000-12.png</p>"
    assert Image.open(paths[0]).info["parameters"] == INFO_B
    with (folder / "log.csv").open(encoding="utf-8", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert (row["prompt"], row["seed"], row["filename"], row["negative_prompt"]) == (
        "a red cat", "12", "00000-12.png", "dog")


def test_save_without_selection_saves_all_and_never_overwrites(tmp_path: Path) -> None:
    save_images(tmp_path, _gallery(), [INFO_A, INFO_B], 0)
    paths, message = save_images(tmp_path, _gallery(), [INFO_A, INFO_B], None)
    assert [p.name for p in paths] == ["00001-11.png", "00002-12.png"]
    assert message == "<p>Saved: 00001-11.png, 00002-12.png</p>"


def test_save_with_nothing_or_an_unwritable_folder_warns(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="Nothing to save"):
        assert save_images(tmp_path, [], [], None) == ([], "")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    with pytest.warns(UserWarning, match="Not saved"):
        paths, message = save_images(blocker / "images", _gallery(), [INFO_A, INFO_B], None)
    assert paths == [] and "Not saved" in message and str(tmp_path) not in message


_SAVE_ON_A_FULL_DISK = """
import json, sys, warnings
import numpy as np
from PIL import Image
from pathlib import Path
from modules.ui.output_panel import save_images
noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8))
with warnings.catch_warnings(record=True) as shown:
    warnings.simplefilter("always")
    paths, message = save_images(Path(sys.argv[1]), [(noise, "Seed 11")], ["Seed: 11"], None)
print(json.dumps({"paths": [str(p) for p in paths], "message": message, "warnings": [str(w.message) for w in shown]}))
"""


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))  # a 256x256 noise PNG is ~200 KB


def test_save_on_a_full_disk_says_so_in_words(tmp_path: Path) -> None:
    # A child process with a file-size limit: past it, writes fail with EFBIG, as a full disk does.
    done = subprocess.run([sys.executable, "-c", _SAVE_ON_A_FULL_DISK, str(tmp_path / "log")], capture_output=True,
                          text=True, timeout=180, cwd=Path(__file__).resolve().parents[2],
                          preexec_fn=_limit_file_size, check=True)
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["paths"] == []
    assert outcome["message"].startswith("<p>Not saved: Not enough disk space to save the image")
    assert any("Not enough disk space" in warning for warning in outcome["warnings"])
    assert "Traceback" not in outcome["message"] and str(tmp_path) not in outcome["message"]
    assert [p.name for p in (tmp_path / "log").iterdir()] == []  # no torn PNG, no temp file


def test_open_folder_handler_warns_when_exposed(tmp_path: Path) -> None:
    opened: list[Path] = []
    with pytest.warns(UserWarning, match="disabled"):
        open_output_folder(tmp_path, ServerBinding("0.0.0.0", False), opened.append)
    open_output_folder(tmp_path, ServerBinding("127.0.0.1", False), opened.append)
    assert opened == [tmp_path]


def test_a_blocks_that_has_not_launched_counts_as_exposed() -> None:
    with gr.Blocks() as demo:
        gr.Markdown("x")
    assert launched_binding(demo) == ServerBinding(None, False)
    assert not launched_binding(demo).is_local_only


def test_gallery_captions_name_the_grid_and_the_seeds() -> None:
    images = [Image.new("RGB", (16, 8)), Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8))]
    assert [caption for _, caption in gallery_entries(images, [11, 11, 12], 1)] == ["Grid", "Seed 11", "Seed 12"]
    assert [caption for _, caption in gallery_entries(images[1:], [11, 12])] == ["Seed 11", "Seed 12"]


def test_a_click_shows_that_images_infotext_alone() -> None:
    assert selected_info([INFO_A, INFO_A, INFO_B], 2) == INFO_B
    assert selected_info([INFO_A, INFO_A, INFO_B], 0) == INFO_A  # the grid: the first image's
    for index in (None, 5):  # nothing known to show: the box stays as it is
        assert selected_info([INFO_A], index) == gr.update()
