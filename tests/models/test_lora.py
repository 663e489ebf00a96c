"""LoRA files: found by name only, hashed as A1111 does, applied for a block and removed exactly."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modules.models.hashing import HashCache
from modules.models.loader import LoadedModel
from modules.models.lora import LoraLibrary, LoraUse, loras_applied
from tests.network_files import kohya_lora, write_lora


def _library(root: Path, allow_pickle: bool = False) -> LoraLibrary:
    return LoraLibrary([root], HashCache(root.parent / "hashes.json"), allow_pickle)


def _unet_output(model: LoadedModel) -> torch.Tensor:
    unet = model.pipeline.unet
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    context = torch.randn(1, 77, unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        return unet(latents, torch.tensor([500]), context).sample


def _text_output(model: LoadedModel) -> torch.Tensor:
    ids = torch.tensor([[49406, 320, 1929, 49407] + [49407] * 73])
    with torch.inference_mode():
        return model.pipeline.text_encoder(ids)[0]


def test_library_finds_files_by_stem_or_subfolder_path_and_never_by_path(tmp_path: Path) -> None:
    root = tmp_path / "Lora"
    write_lora(root / "ink.safetensors", {"x.alpha": torch.tensor(1.0)})
    write_lora(root / "styles" / "film.safetensors", {"x.alpha": torch.tensor(1.0)})
    write_lora(root / ".hidden" / "secret.safetensors", {"x.alpha": torch.tensor(1.0)})
    (root / "notes.txt").write_text("not a lora")
    outside = write_lora(tmp_path / "outside.safetensors", {"x.alpha": torch.tensor(1.0)})
    library = _library(root)

    assert sorted(f.relative for f in library.files) == ["ink", "styles/film"]
    assert library.find("film").path == root / "styles" / "film.safetensors"
    assert library.find("styles/film") == library.find("film")
    assert library.find("secret") is None
    assert library.find(str(outside)) is None and library.find("../outside") is None
    write_lora(root / "new.safetensors", {"x.alpha": torch.tensor(1.0)})
    assert "new" not in [f.name for f in library.files]
    assert library.find("new") is not None  # a miss rescans: no refresh needed for a new file


def test_short_hash_is_the_addnet_hash_of_the_tensor_data(tmp_path: Path) -> None:
    """A1111 and kohya name a LoRA by the SHA-256 of its data without the header, so
    rewriting its metadata keeps the hash (12 hex digits in "Lora hashes")."""
    tensors = {"a.lora_down.weight": torch.arange(6.0).reshape(2, 3)}
    first = write_lora(tmp_path / "Lora" / "one.safetensors", tensors, {"ss_output_name": "one"})
    second = write_lora(tmp_path / "Lora" / "two.safetensors", tensors, {"ss_output_name": "renamed", "x": "y"})
    library = _library(tmp_path / "Lora")
    raw = first.read_bytes()
    header_length = int.from_bytes(raw[:8], "little")
    expected = hashlib.sha256(raw[8 + header_length:]).hexdigest()[:12]

    assert library.short_hash(library.find("one")) == expected == library.short_hash(library.find("two"))
    assert hashlib.sha256(raw).hexdigest()[:12] != hashlib.sha256(second.read_bytes()).hexdigest()[:12]


def test_lora_changes_unet_and_text_encoder_and_leaving_restores_them_bit_for_bit(
        sd15_model: LoadedModel, tmp_path: Path) -> None:
    write_lora(tmp_path / "Lora" / "style.safetensors", kohya_lora(sd15_model.pipeline))
    library = _library(tmp_path / "Lora")
    unet_before, text_before = _unet_output(sd15_model), _text_output(sd15_model)
    modules_before = {name: type(m) for name, m in sd15_model.pipeline.unet.named_modules()}

    with loras_applied(sd15_model.pipeline, library, [LoraUse(library.find("style"), 1.0, 1.0)]) as outcome:
        assert outcome.failures == [] and len(outcome.applied) == 1
        assert not torch.allclose(_unet_output(sd15_model), unet_before)
        assert not torch.allclose(_text_output(sd15_model), text_before)

    assert torch.equal(_unet_output(sd15_model), unet_before) and torch.equal(_text_output(sd15_model), text_before)
    assert {name: type(m) for name, m in sd15_model.pipeline.unet.named_modules()} == modules_before


def test_text_encoder_and_unet_weights_apply_separately(sd15_model: LoadedModel, tmp_path: Path) -> None:
    write_lora(tmp_path / "Lora" / "style.safetensors", kohya_lora(sd15_model.pipeline))
    library = _library(tmp_path / "Lora")
    unet_before, text_before = _unet_output(sd15_model), _text_output(sd15_model)

    with loras_applied(sd15_model.pipeline, library, [LoraUse(library.find("style"), 0.0, 1.0)]):
        assert torch.equal(_text_output(sd15_model), text_before)
        assert not torch.allclose(_unet_output(sd15_model), unet_before)
    with loras_applied(sd15_model.pipeline, library, [LoraUse(library.find("style"), 1.0, 0.0)]):
        assert not torch.allclose(_text_output(sd15_model), text_before)
        assert torch.equal(_unet_output(sd15_model), unet_before)


def test_several_loras_at_once_all_apply_with_their_own_weights(sd15_model: LoadedModel, tmp_path: Path) -> None:
    write_lora(tmp_path / "Lora" / "a.safetensors", kohya_lora(sd15_model.pipeline, seed=1))
    write_lora(tmp_path / "Lora" / "b.safetensors", kohya_lora(sd15_model.pipeline, seed=2))
    library = _library(tmp_path / "Lora")
    a, b, b_off = LoraUse(library.find("a")), LoraUse(library.find("b")), LoraUse(library.find("b"), 0.0, 0.0)
    outputs = {}
    for label, uses in (("a", [a]), ("b", [b]), ("ab", [a, b]), ("a+b_off", [a, b_off])):
        with loras_applied(sd15_model.pipeline, library, uses) as outcome:
            assert len(outcome.applied) == len(uses)
            outputs[label] = _unet_output(sd15_model)

    assert not torch.allclose(outputs["ab"], outputs["a"]) and not torch.allclose(outputs["ab"], outputs["b"])
    torch.testing.assert_close(outputs["a+b_off"], outputs["a"])  # b is loaded, with weight 0


def test_a_file_that_is_no_lora_fails_alone_and_the_rest_still_apply(sd15_model: LoadedModel,
                                                                      tmp_path: Path) -> None:
    write_lora(tmp_path / "Lora" / "good.safetensors", kohya_lora(sd15_model.pipeline))
    save_file({"model.diffusion_model.weight": torch.zeros(2)}, str(tmp_path / "Lora" / "checkpoint.safetensors"))
    (tmp_path / "Lora" / "broken.safetensors").write_bytes(b"\x00" * 4)
    library = _library(tmp_path / "Lora")
    base = _unet_output(sd15_model)
    uses = [LoraUse(library.find(name)) for name in ("checkpoint", "broken", "good")]

    with loras_applied(sd15_model.pipeline, library, uses) as outcome:
        assert [use.file.name for use in outcome.applied] == ["good"]
        assert len(outcome.failures) == 2 and outcome.failures[0].startswith("checkpoint: ")
        assert "broken" in outcome.failures[1]
        assert not torch.allclose(_unet_output(sd15_model), base)
    assert torch.equal(_unet_output(sd15_model), base)


def test_a_failing_job_still_removes_the_lora(sd15_model: LoadedModel, tmp_path: Path) -> None:
    write_lora(tmp_path / "Lora" / "style.safetensors", kohya_lora(sd15_model.pipeline))
    library = _library(tmp_path / "Lora")
    base = _unet_output(sd15_model)
    with pytest.raises(RuntimeError, match="job failed"):
        with loras_applied(sd15_model.pipeline, library, [LoraUse(library.find("style"))]):
            raise RuntimeError("job failed")
    assert torch.equal(_unet_output(sd15_model), base)
    assert sd15_model.pipeline.get_list_adapters() == {}


def test_pickled_lora_needs_allow_pickle(sd15_model: LoadedModel, tmp_path: Path) -> None:
    root = tmp_path / "Lora"
    root.mkdir()
    torch.save(kohya_lora(sd15_model.pipeline), root / "old.pt")
    refused, allowed = _library(root), _library(root, allow_pickle=True)
    base = _unet_output(sd15_model)

    with loras_applied(sd15_model.pipeline, refused, [LoraUse(refused.find("old"))]) as outcome:
        assert outcome.applied == [] and "--allow-pickle" in outcome.failures[0]
        assert torch.equal(_unet_output(sd15_model), base)
    with loras_applied(sd15_model.pipeline, allowed, [LoraUse(allowed.find("old"))]) as outcome:
        assert len(outcome.applied) == 1 and not torch.allclose(_unet_output(sd15_model), base)


def test_sdxl_lora_in_kohya_ldm_layout_reaches_unet_and_both_text_encoders(sdxl_model: LoadedModel,
                                                                           tmp_path: Path) -> None:
    write_lora(tmp_path / "Lora" / "xl.safetensors", kohya_lora(sdxl_model.pipeline))
    library = _library(tmp_path / "Lora")
    with loras_applied(sdxl_model.pipeline, library, [LoraUse(library.find("xl"))]) as outcome:
        assert outcome.failures == []
        assert {part for part, names in sdxl_model.pipeline.get_list_adapters().items() if names} == {
            "unet", "text_encoder", "text_encoder_2"}
    assert sdxl_model.pipeline.get_list_adapters() == {}
