"""External VAEs: chosen per request, recorded in the infotext, and switched back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import save_file

from modules.models.hashing import HashCache
from modules.models.ldm_export import vae_to_ldm
from modules.models.manager import ModelManager
from modules.models.registry import CheckpointRegistry, ModelNotFoundError
from modules.processing.generation.txt2img import run_txt2img
from modules.processing.jobs.job import Job
from modules.processing.output.request_infotext import request_from_infotext
from modules.processing.requests import Txt2ImgRequest
from tests.conftest import CPU_FP32
from tests.tiny_models import build_tiny_pipeline, write_tiny_checkpoint


@pytest.fixture(scope="module")
def vae_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelManager, Path]:
    root = tmp_path_factory.mktemp("vae-case")
    checkpoints, vaes = root / "Stable-diffusion", root / "VAE"
    write_tiny_checkpoint(checkpoints, "sd15", name="base")
    other = build_tiny_pipeline("sd15", seed=5).vae
    vaes.mkdir()
    save_file(vae_to_ldm(other.state_dict(), other.config, prefix=""), str(vaes / "other.safetensors"))
    manager = ModelManager(CheckpointRegistry([checkpoints], HashCache(root / "h.json")), CPU_FP32,
                           vae_roots=[vaes])
    return manager, vaes


def _generate(manager: ModelManager, vae: str | None) -> tuple[np.ndarray, str]:
    request = Txt2ImgRequest(prompt="x", width=64, height=64, num_inference_steps=2, seed=1, vae=vae)
    result = run_txt2img(manager.get("base", request.vae), Job(request))
    return np.asarray(result.images[0]), result.infotexts[0]


def test_named_vae_changes_the_image_and_is_recorded(vae_setup) -> None:
    manager, vaes = vae_setup
    own, own_info = _generate(manager, "None")
    other, other_info = _generate(manager, "other.safetensors")
    assert not np.array_equal(own, other)
    assert "VAE: other.safetensors" in other_info and "VAE hash: " in other_info
    assert "VAE" not in own_info
    assert request_from_infotext(other_info).vae == "other.safetensors"
    back, _ = _generate(manager, "None")
    assert np.array_equal(own, back)


def test_automatic_uses_a_vae_named_after_the_checkpoint(vae_setup) -> None:
    manager, vaes = vae_setup
    own, _ = _generate(manager, None)
    (vaes / "base.safetensors").write_bytes((vaes / "other.safetensors").read_bytes())
    try:
        automatic, info = _generate(manager, "Automatic")
        assert "VAE: base.safetensors" in info and not np.array_equal(own, automatic)
    finally:
        (vaes / "base.safetensors").unlink()


def test_unknown_vae_is_a_clear_error(vae_setup) -> None:
    manager, vaes = vae_setup
    with pytest.raises(ModelNotFoundError, match="no VAE named 'nope'"):
        manager.get("base", "nope")
