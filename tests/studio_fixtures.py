"""Fixtures for tests that go through the studio: a data dir holding the tiny SD1.x checkpoint,
a studio on it (with the shipped scripts and extensions), and a helper that runs a payload.
conftest files import them by name."""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modules.app import build_app_context
from modules.processing.generation.txt2img import GenerationResult
from modules.settings import SettingsStore
from modules.studio import Studio


@pytest.fixture
def data_dir(tmp_path: Path, tiny_checkpoint_dir: Path) -> Path:
    target = tmp_path / "models" / "Stable-diffusion"
    target.mkdir(parents=True)
    for item in tiny_checkpoint_dir.glob("tiny-sd15*"):
        (shutil.copytree if item.is_dir() else shutil.copy)(item, target / item.name)
    return tmp_path


@pytest.fixture
def studio(data_dir: Path) -> Iterator[Studio]:
    args = argparse.Namespace(data_dir=data_dir, ckpt_dir=[], precision="fp32", no_half=False, device="cpu",
                              allow_pickle=False)
    service = Studio(build_app_context(args), SettingsStore(data_dir / "config.json"))
    yield service
    service.close()


BASE = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 5, "sampler_name": "Euler"}


@pytest.fixture
def generate(studio: Studio) -> Callable[..., GenerationResult]:
    """Run a txt2img (or, with ``init_images``, img2img) payload to the end."""

    def run(**payload: Any) -> GenerationResult:
        body = {**BASE, **payload}
        submit = studio.submit_img2img if "init_images" in body else studio.submit_txt2img
        status = studio.wait(submit(body), timeout=300)
        assert status.state == "done", status.error
        return status.result

    return run
