"""The models a payload names: which field named each, and the check before a job is queued."""

from __future__ import annotations

from pathlib import Path

import pytest

from modules.model_references import check_model_references, model_failure, model_fields
from modules.models.files import ModelFileError
from modules.models.hashing import HashCache
from modules.models.registry import CheckpointRegistry, ModelNotFoundError
from modules.processing.errors import ModelUnavailableError, RequestValidationError
from modules.processing.requests import Txt2ImgRequest
from tests.models.test_registry import copy_checkpoint


def test_the_field_that_named_each_model() -> None:
    assert model_fields({"override_settings": {"sd_model_checkpoint": "a", "sd_vae": "v"}}) == {
        "checkpoint": "override_settings.sd_model_checkpoint", "vae": "override_settings.sd_vae"}
    assert model_fields({"model": "a"}) == {"checkpoint": "model"}
    # The later one wins, as the request reader reads them.
    assert model_fields({"override_settings": {"sd_model_checkpoint": "a"}, "sd_model_checkpoint": "b"}) == {
        "checkpoint": "sd_model_checkpoint"}
    assert model_fields({"sd_model_checkpoint": None, "override_settings": {"sd_vae": None}}) == {}


@pytest.fixture
def registry(tmp_path: Path, tiny_checkpoint_dir: Path) -> CheckpointRegistry:
    root = tmp_path / "Stable-diffusion"
    copy_checkpoint(tiny_checkpoint_dir / "tiny-sd15.safetensors", root, "good")
    (root / "pointer.safetensors").write_text("version https://git-lfs.github.com/spec/v1\n")
    return CheckpointRegistry([root], HashCache(tmp_path / "hashes.json"))


@pytest.mark.parametrize(("payload", "field", "words"), [
    ({"override_settings": {"sd_model_checkpoint": "pointer"}}, "override_settings.sd_model_checkpoint", "git-lfs"),
    ({"sd_model_checkpoint": "/etc/passwd"}, "sd_model_checkpoint", "names a file path"),
    ({"override_settings": {"sd_vae": "nope.safetensors"}}, "override_settings.sd_vae", "no VAE named"),
    ({"override_settings": {"sd_vae": "/tmp/x.safetensors"}}, "override_settings.sd_vae", "names a file path"),
    ({"override_settings": {"sd_vae": "pointer-vae"}}, "override_settings.sd_vae", "git-lfs"),
])
def test_a_bad_reference_is_refused_naming_its_field(registry: CheckpointRegistry, tmp_path: Path, payload: dict,
                                                     field: str, words: str) -> None:
    options = payload.get("override_settings", {})
    checkpoint = payload.get("sd_model_checkpoint", options.get("sd_model_checkpoint"))
    request = Txt2ImgRequest(prompt="x", checkpoint=checkpoint, vae=options.get("sd_vae"))
    (tmp_path / "VAE").mkdir(exist_ok=True)
    (tmp_path / "VAE" / "pointer-vae.safetensors").write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(RequestValidationError) as caught:
        check_model_references(payload, request, registry, [tmp_path / "VAE"])
    assert caught.value.field == field and words in caught.value.message
    assert str(tmp_path) not in caught.value.message


def test_good_references_pass(registry: CheckpointRegistry, tmp_path: Path) -> None:
    request = Txt2ImgRequest(prompt="x", checkpoint="good", vae="Automatic")
    assert check_model_references({"sd_model_checkpoint": "good"}, request, registry, [tmp_path]) == {
        "checkpoint": "sd_model_checkpoint"}


def test_a_model_that_fails_to_load_is_the_namers_mistake() -> None:
    broken = ModelFileError(Path("/srv/models/VAE/v.safetensors"), "unsupported", "is not a VAE")
    named = model_failure(broken, Txt2ImgRequest(prompt="x", vae="v"), False, {"vae": "override_settings.sd_vae"})
    assert isinstance(named, RequestValidationError) and named.field == "override_settings.sd_vae"
    assert named.message == "the VAE v.safetensors: is not a VAE"
    setting = model_failure(broken, Txt2ImgRequest(prompt="x"), False, {})
    assert isinstance(setting, ModelUnavailableError) and "/srv" not in str(setting)
    missing = model_failure(ModelNotFoundError("no checkpoint named 'q'"), Txt2ImgRequest(prompt="x", checkpoint="q"),
                            True, {})
    assert isinstance(missing, RequestValidationError) and missing.field == "sd_model_checkpoint"
