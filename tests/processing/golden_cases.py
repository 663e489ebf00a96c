"""The golden-image cases: every tiny family x every sampler x txt2img / img2img / inpaint.

Issue 21 redesigns the engine (model families, one loop); today's users must see no change, so
these images were recorded before the redesign (``tools/record_golden_images.py``) and
``test_golden_images.py`` compares every later run with them.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from modules.models.hashing import HashCache
from modules.models.manager import ModelManager
from modules.models.registry import CheckpointRegistry
from modules.processing.editing.img2img import run_img2img
from modules.processing.editing.img2img_request import Img2ImgRequest
from modules.processing.generation.hires import HiresFix
from modules.processing.generation.txt2img import run_txt2img
from modules.processing.jobs.job import Job
from modules.processing.requests import Txt2ImgRequest
from modules.processing.sampling.samplers import SAMPLERS
from tests.conftest import CPU_FP32
from tests.tiny_models import FAMILIES, write_tiny_checkpoint

GOLDEN_FILE = Path(__file__).resolve().parent / "golden" / "images.npz"
MODES = ("txt2img", "hires", "img2img", "inpaint")


@dataclass(frozen=True)
class GoldenCase:
    family: str
    sampler: str
    mode: str

    @property
    def key(self) -> str:
        return f"{self.family}/{self.sampler}/{self.mode}"


def golden_cases() -> Iterator[GoldenCase]:
    for family in FAMILIES:
        for spec in SAMPLERS:
            for mode in MODES:
                yield GoldenCase(family, spec.name, mode)


def machine_fingerprint() -> str:
    """What decides float results bit for bit: the torch build, the CPU kernels it picks and the
    CPU itself (an AMD and an Intel CPU both reporting AVX512 still round differently)."""
    return f"torch {torch.__version__} / {torch.backends.cpu.get_cpu_capability()} / {_cpu_model()}"


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def _picture() -> Image.Image:
    x = np.linspace(0, 255, 64, dtype=np.uint8)
    image = Image.fromarray(np.stack([np.tile(x, (64, 1)), np.tile(x[::-1], (64, 1)),
                                      np.full((64, 64), 90, np.uint8)], axis=-1))
    ImageDraw.Draw(image).rectangle((10, 10, 25, 30), fill=(20, 20, 20))
    return image


def _mask() -> Image.Image:
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).ellipse((20, 16, 52, 48), fill=255)
    return mask


def golden_manager(folder: Path) -> ModelManager:
    """Every tiny family written to ``folder`` and loaded through the real registry and loader."""
    for family in FAMILIES:
        write_tiny_checkpoint(folder / "Stable-diffusion", family)
    registry = CheckpointRegistry([folder / "Stable-diffusion"], HashCache(folder / "hashes.json"))
    return ModelManager(registry, CPU_FP32, keep_loaded=1)


def render(manager: ModelManager, case: GoldenCase) -> np.ndarray:
    """The case's image as (64, 64, 3) uint8 ((96, 96, 3) for Hires. fix)."""
    model = manager.get(f"tiny-{case.family}")
    fields = {"prompt": "a red fox in snow", "negative_prompt": "blurry", "width": 64, "height": 64,
              "num_inference_steps": 4, "seed": 11, "guidance_scale": 7.0, "sampler_name": case.sampler}
    if case.mode in ("txt2img", "hires"):
        hires = HiresFix(scale=1.5, steps=2, denoising_strength=0.5) if case.mode == "hires" else None
        result = run_txt2img(model, Job(Txt2ImgRequest(**fields, hires=hires)))
    else:
        mask = _mask() if case.mode == "inpaint" else None
        request = Img2ImgRequest(**fields, init_images=(_picture(),), strength=0.6, mask=mask)
        result = run_img2img(model, Job(request))
    assert not result.hook_errors and len(result.images) == 1
    return np.asarray(result.images[0].convert("RGB"), dtype=np.uint8)
