"""App-level callbacks: registered while a script file loads, run with failures isolated."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from PIL import Image

from modules.app import build_app_context
from modules.extensions.api import register_callback
from modules.extensions.loader import discover_scripts
from modules.settings import SettingsStore
from modules.studio import Studio
from tests.studio_fixtures import BASE

EXTENSION = '''
from modules.extensions.api import register_callback

SEEN = []

def loaded(pipeline):
    SEEN.append(("model", type(pipeline).__name__))

def saved(path, image, infotext):
    SEEN.append(("saved", path.name, image.size, infotext.splitlines()[0]))

def broken(*args):
    raise RuntimeError("callback bug")

def mark(params):
    params.infotext += ", Watermarked: yes"
    params.image = params.image.transpose(0)  # mirrored

def pasted(infotext, fields):
    fields["Steps"] = "3"

register_callback("on_before_image_saved", mark)
register_callback("on_infotext_pasted", pasted)
register_callback("on_model_loaded", loaded)
register_callback("on_image_saved", broken)
register_callback("on_image_saved", saved)
'''


def _write(root: Path, name: str, source: str) -> None:
    folder = root / "extensions" / name / "scripts"
    folder.mkdir(parents=True)
    (folder.parent / "extension.json").write_text(f'{{"name": "{name}"}}')
    (folder / "main.py").write_text(source)


def test_callbacks_of_a_file_that_fails_later_are_dropped(tmp_path: Path) -> None:
    _write(tmp_path, "good", "from modules.extensions.api import register_callback\n"
                             "register_callback('on_ui_tabs', lambda: [])\n")
    _write(tmp_path, "half", "from modules.extensions.api import register_callback\n"
                             "register_callback('on_ui_tabs', lambda: [])\nraise ImportError('missing package')\n")
    _write(tmp_path, "typo", "from modules.extensions.api import register_callback\n"
                             "register_callback('on_app_start', print)\n")
    catalog = discover_scripts(tmp_path / "scripts", tmp_path / "extensions")
    assert [(c.name, c.path.parts[-3]) for c in catalog.callbacks] == [("on_ui_tabs", "good")]
    assert any("half" in e and "missing package" in e for e in catalog.errors)
    assert any("typo" in e and "unknown callback 'on_app_start'" in e for e in catalog.errors)


def test_register_callback_outside_a_script_import_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="top level of a script file"):
        register_callback("on_ui_tabs", lambda: [])


def test_model_loaded_once_and_every_saved_image_reach_extensions(data_dir: Path) -> None:
    _write(data_dir, "watcher", EXTENSION)
    args = argparse.Namespace(data_dir=data_dir, ckpt_dir=[], precision="fp32", no_half=False, device="cpu")
    studio = Studio(build_app_context(args), SettingsStore(data_dir / "config.json"))
    try:
        for _ in range(2):
            status = studio.wait(studio.submit_txt2img({**BASE, "batch_size": 2}), timeout=120)
            assert status.state == "done" and status.result.hook_errors == []
        [callback] = [c for c in studio.context.scripts.callbacks if c.name == "on_model_loaded"]
        seen = callback.function.__globals__["SEEN"]
        assert seen.count(("model", "StableDiffusionPipeline")) == 1
        saved = [entry for entry in seen if entry[0] == "saved"]
        # Each batch of two saves its images and, as in A1111, their grid: all pass image_saved.
        sizes = sorted(entry[2] for entry in saved)
        assert sizes == [(64, 64)] * 4 + [(128, 64)] * 2 and all(entry[3] == "a cat" for entry in saved)
        files = sorted((data_dir / "outputs").rglob("*.png"))
        assert {entry[1] for entry in saved} == {p.name for p in files}
        assert all(Image.open(p).info["parameters"].endswith("Watermarked: yes") for p in files)
        assert status.result.infotexts[0].endswith("Watermarked: yes")
        fields = {"Prompt": "x", "Steps": "20"}
        studio.context.scripts.run_callbacks("on_infotext_pasted", "x\nSteps: 20", fields)
        assert fields["Steps"] == "3"
    finally:
        studio.close()
