"""The Models-tab catalog: listing with families read from headers, cached hashes only,
A1111 sidecars and previews, background hashing, and deletion confined to model folders."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modules.models.catalog import (
    BackgroundHasher,
    ModelEntry,
    ModelInstallError,
    delete_model,
    list_models,
    read_details,
    read_user_metadata,
    save_user_metadata,
    sidecar_path,
)
from modules.models.hashing import HashCache
from tests.network_files import write_embedding, write_lora
from tests.upscaler_files import write_tiny_upscaler

_INDEX = "model_index.json"


def _lora_state(width: int, sgm: bool = False) -> dict[str, torch.Tensor]:
    """A one-module kohya LoRA on a cross-attention key projection of ``width`` inputs."""
    module = "lora_unet_input_blocks_4_1" if sgm else "lora_unet_down_blocks_0_attentions_0"
    key = f"{module}_transformer_blocks_0_attn2_to_k"
    return {f"{key}.lora_down.weight": torch.zeros(2, width), f"{key}.lora_up.weight": torch.zeros(8, 2),
            f"{key}.alpha": torch.tensor(2.0)}


def _write(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def _by_name(entries: list[ModelEntry]) -> dict[str, ModelEntry]:
    return {entry.name: entry for entry in entries}


@pytest.fixture
def hashes(tmp_path: Path) -> HashCache:
    return HashCache(tmp_path / "cache" / "hashes.json")


def test_lists_many_files_sorted_with_names_sizes_and_no_hashing(tmp_path: Path, hashes: HashCache) -> None:
    root = tmp_path / "Lora"
    for i in range(50):
        write_lora(root / ("sub" if i % 5 == 0 else "") / f"lora{i:02d}.safetensors", _lora_state(768))
    (root / "notes.txt").write_text("not a model")
    (root / ".hidden.safetensors.1234.part").write_bytes(b"partial download")
    entries = list_models("lora", [root], hashes)
    assert len(entries) == 50
    assert [e.name for e in entries] == sorted((e.name for e in entries), key=str.lower)
    assert "sub/lora00" in _by_name(entries) and "lora01" in _by_name(entries)
    first = _by_name(entries)["lora01"]
    assert first.size_bytes == first.path.stat().st_size and first.kind == "lora"
    assert all(e.short_hash is None for e in entries)
    assert not (tmp_path / "cache" / "hashes.json").exists()  # nothing was hashed


def test_families_from_headers_for_every_kind(tmp_path: Path, hashes: HashCache) -> None:
    write_lora(tmp_path / "Lora" / "sd15.safetensors", _lora_state(768))
    write_lora(tmp_path / "Lora" / "xl.safetensors", _lora_state(2048, sgm=True))
    write_lora(tmp_path / "Lora" / "sd2.safetensors", _lora_state(1024))
    loras = _by_name(list_models("lora", [tmp_path / "Lora"], hashes))
    assert (loras["sd15"].family, loras["sd15"].base) == ("LoRA SD1.x", "SD1.x")
    assert loras["xl"].family == "LoRA SDXL" and loras["sd2"].family == "LoRA SD2.x"

    write_embedding(tmp_path / "embeddings" / "one.safetensors", (768,))
    write_embedding(tmp_path / "embeddings" / "two.safetensors", (768, 1280))
    embeddings = _by_name(list_models("embeddings", [tmp_path / "embeddings"], hashes))
    assert embeddings["one"].family == "Embedding SD1.x" and embeddings["two"].family == "Embedding SDXL"

    unet_in = "model.diffusion_model.input_blocks.0.0.weight"
    sd15_text = "cond_stage_model.transformer.text_model.final_layer_norm.weight"
    xl_text = ("conditioner.embedders.0.transformer.text_model.final_layer_norm.weight",
               "conditioner.embedders.1.model.ln_final.weight")
    _write(tmp_path / "ckpt" / "a.safetensors", {unet_in: torch.zeros(2, 4, 1, 1), sd15_text: torch.zeros(2)})
    _write(tmp_path / "ckpt" / "b.safetensors", {unet_in: torch.zeros(2, 9, 1, 1),
                                                 **{key: torch.zeros(2) for key in xl_text}})
    _write(tmp_path / "ckpt" / "c.safetensors", {"x": torch.zeros(2)})
    checkpoints = _by_name(list_models("checkpoints", [tmp_path / "ckpt"], hashes))
    assert checkpoints["a"].family == "SD1.x" and checkpoints["a"].base == "SD1.x"
    assert (checkpoints["b"].family, checkpoints["b"].base) == ("SDXL inpainting", "SDXL")
    assert checkpoints["c"].family == ""


def test_flux_loras_are_listed_as_flux_in_each_key_layout(tmp_path: Path, hashes: HashCache) -> None:
    pair = {"lora_down.weight": torch.zeros(2, 64), "lora_up.weight": torch.zeros(192, 2)}
    layouts = {"kohya": "lora_unet_double_blocks_0_img_attn_qkv.", "bfl": "diffusion_model.single_blocks.0.linear1.",
               "diffusers": "transformer.single_transformer_blocks.0.attn.to_q."}
    for name, prefix in layouts.items():
        write_lora(tmp_path / "Lora" / f"{name}.safetensors", {prefix + k: v for k, v in pair.items()})
    write_lora(tmp_path / "Lora" / "by_metadata.safetensors", _lora_state(768), {"ss_base_model_version": "flux1"})
    loras = _by_name(list_models("lora", [tmp_path / "Lora"], hashes))
    assert {name: (entry.family, entry.base) for name, entry in loras.items()} == {
        name: ("LoRA FLUX.1", "FLUX.1") for name in ("kohya", "bfl", "diffusers", "by_metadata")}


def test_diffusers_folders_listed_and_config_folders_skipped(tmp_path: Path, hashes: HashCache) -> None:
    root = tmp_path / "Stable-diffusion"
    xl = root / "my.xl"
    (xl / "unet").mkdir(parents=True)
    (xl / _INDEX).write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline", "text_encoder_2": ["x", "y"]}))
    (xl / "unet" / "config.json").write_text(json.dumps({"in_channels": 4}))
    _write(root / "tiny.safetensors", {"x": torch.zeros(2)})
    (root / "tiny.config").mkdir()
    (root / "tiny.config" / _INDEX).write_text("{}")  # the checkpoint's own configs, not a model
    save_user_metadata(xl, {"notes": "folder"})
    entries = _by_name(list_models("checkpoints", [root], hashes))
    assert sorted(entries) == ["my.xl", "tiny"]
    assert entries["my.xl"].family == "SDXL" and entries["my.xl"].short_hash is None
    assert entries["my.xl"].size_bytes == sum(f.stat().st_size for f in xl.rglob("*") if f.is_file())
    assert entries["my.xl"].user_metadata == {"notes": "folder"} and (root / "my.xl.json").is_file()


def test_vae_controlnet_and_upscaler_families(tmp_path: Path, hashes: HashCache) -> None:
    _write(tmp_path / "VAE" / "v.safetensors", {"decoder.conv_in.weight": torch.zeros(8, 4, 3, 3)})
    assert list_models("vae", [tmp_path / "VAE"], hashes)[0].family == "VAE SD/SDXL"
    key = "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
    _write(tmp_path / "ControlNet" / "canny.safetensors", {key: torch.zeros(4, 768)})
    assert list_models("controlnet", [tmp_path / "ControlNet"], hashes)[0].family == "ControlNet SD1.x"
    write_tiny_upscaler(tmp_path / "RealESRGAN" / "x2.safetensors", 2)
    (tmp_path / "ESRGAN").mkdir()
    upscalers = list_models("upscalers", [tmp_path / "ESRGAN", tmp_path / "RealESRGAN"], hashes)
    assert [u.name for u in upscalers] == ["x2"] and upscalers[0].family == "RealESRGAN Compact"


def test_lora_training_metadata_and_trigger_words(tmp_path: Path, hashes: HashCache) -> None:
    tags = {"10_ink": {"ink style": 7, "cat": 3, " ": 9}, "5_more": {"cat": 9, "dog": 1}}
    metadata = {"ss_sd_model_name": "v1-5-pruned.safetensors", "ss_base_model_version": "sd_v1",
                "ss_num_epochs": "10", "ss_tag_frequency": json.dumps(tags), "other": "kept"}
    write_lora(tmp_path / "Lora" / "ink.safetensors", _lora_state(768), metadata)
    entry = list_models("lora", [tmp_path / "Lora"], hashes)[0]
    assert entry.metadata["other"] == "kept"
    assert entry.training == {"ss_sd_model_name": "v1-5-pruned.safetensors", "ss_base_model_version": "sd_v1",
                              "ss_num_epochs": "10"}
    assert entry.trained_words == ("cat", "ink style", "dog")  # summed over datasets, most frequent first
    assert entry.trigger_words == "cat, ink style, dog"


def test_lazy_listing_reads_no_header_until_asked(tmp_path: Path, hashes: HashCache) -> None:
    write_lora(tmp_path / "Lora" / "ink.safetensors", _lora_state(768), {"ss_num_epochs": "3"})
    (tmp_path / "Lora" / "broken.safetensors").write_bytes(b"\x00" * 4)
    lazy = _by_name(list_models("lora", [tmp_path / "Lora"], hashes, read_headers=False))
    assert lazy["ink"].family == "" and not lazy["ink"].has_details and lazy["ink"].metadata == {}
    detailed = read_details(lazy["ink"])
    assert detailed.family == "LoRA SD1.x" and detailed.training == {"ss_num_epochs": "3"} and detailed.has_details
    broken = read_details(lazy["broken"])
    assert broken.family == "" and broken.has_details


def test_sidecar_round_trip_with_a1111_keys(tmp_path: Path, hashes: HashCache) -> None:
    model = write_lora(tmp_path / "Lora" / "ink.v2.safetensors", _lora_state(768))
    sidecar = sidecar_path(model)
    assert sidecar == tmp_path / "Lora" / "ink.v2.json"
    sidecar.write_text(json.dumps({"sd version": "SD1", "modelspec.custom": "from A1111"}), encoding="utf-8")
    written = save_user_metadata(model, {"description": "Ink drawings", "activation text": "ink style",
                                         "preferred weight": "0.8", "negative text": "blurry", "notes": "v2"})
    assert written == sidecar
    raw = json.loads(sidecar.read_text(encoding="utf-8"))
    assert raw["preferred weight"] == 0.8  # a number, as A1111 writes it
    assert raw["modelspec.custom"] == "from A1111" and raw["sd version"] == "SD1"  # other keys kept
    assert not [p for p in sidecar.parent.iterdir() if p.name.startswith(".")]  # no temp file left
    entry = list_models("lora", [tmp_path / "Lora"], hashes)[0]
    assert entry.user_metadata == {"description": "Ink drawings", "activation text": "ink style",
                                   "preferred weight": "0.8", "negative text": "blurry", "sd version": "SD1",
                                   "notes": "v2"}
    assert entry.trigger_words == "ink style"
    save_user_metadata(model, {"preferred weight": ""})
    assert "preferred weight" not in read_user_metadata(model)


def test_sidecar_rejects_unknown_fields_and_bad_weights(tmp_path: Path) -> None:
    model = write_lora(tmp_path / "Lora" / "ink.safetensors", _lora_state(768))
    with pytest.raises(ModelInstallError) as error:
        save_user_metadata(model, {"trigger": "x"})
    assert error.value.field == "trigger"
    with pytest.raises(ModelInstallError) as error:
        save_user_metadata(model, {"preferred weight": "heavy"})
    assert error.value.field == "preferred weight"
    with pytest.raises(ModelInstallError) as error:
        save_user_metadata(tmp_path / "Lora" / "missing.safetensors", {"notes": "x"})
    assert error.value.field == "path"
    assert not sidecar_path(model).exists()


def test_preview_found_in_a1111_order(tmp_path: Path, hashes: HashCache) -> None:
    root = tmp_path / "Lora"
    for name in ("a", "b", "c"):
        write_lora(root / f"{name}.safetensors", _lora_state(768))
    (root / "a.preview.png").write_bytes(b"png")
    (root / "a.png").write_bytes(b"png")
    (root / "b.jpg").write_bytes(b"jpg")
    entries = _by_name(list_models("lora", [root], hashes))
    assert entries["a"].preview == root / "a.preview.png"
    assert entries["b"].preview == root / "b.jpg"
    assert entries["c"].preview is None


def test_cached_hash_shown_uncached_is_none(tmp_path: Path, hashes: HashCache) -> None:
    root = tmp_path / "Lora"
    first = write_lora(root / "first.safetensors", _lora_state(768))
    write_lora(root / "second.safetensors", _lora_state(1024))
    expected = hashlib.sha256(first.read_bytes()).hexdigest()[:10]
    assert hashes.short_hash(first) == expected
    entries = _by_name(list_models("lora", [root], hashes))
    assert entries["first"].short_hash == expected
    assert entries["second"].short_hash is None


def _wait(hasher: BackgroundHasher) -> None:
    assert hasher.join(timeout=60)


def test_background_hasher_hashes_all_and_reports_progress(tmp_path: Path, hashes: HashCache) -> None:
    paths = [write_lora(tmp_path / "Lora" / f"l{i}.safetensors", _lora_state(768 + i)) for i in range(5)]
    missing = tmp_path / "Lora" / "gone.safetensors"
    hasher = BackgroundHasher(hashes, [*paths, missing])
    before = hasher.progress
    assert (before.done, before.total, before.is_running) == (0, 6, False)
    hasher.start()
    _wait(hasher)
    after = hasher.progress
    assert (after.done, after.total, after.current, after.is_running) == (6, 6, "", False)
    assert after.failed == (missing,)
    assert hasher.results == {p: hashlib.sha256(p.read_bytes()).hexdigest()[:10] for p in paths}
    assert all(hashes.cached_short_hash(p) == hasher.results[p] for p in paths)
    assert all(e.short_hash for e in list_models("lora", [tmp_path / "Lora"], hashes))


def test_background_hasher_stops_when_cancelled(tmp_path: Path, hashes: HashCache) -> None:
    paths = [write_lora(tmp_path / "Lora" / f"l{i}.safetensors", _lora_state(768 + i)) for i in range(200)]
    hasher = BackgroundHasher(hashes, paths)
    hasher.cancel()  # cancelled before it starts: hashes nothing
    hasher.start()
    assert hasher.stop(timeout=60)
    progress = hasher.progress
    assert progress.is_cancelled and progress.done == 0 and hasher.results == {}
    running = BackgroundHasher(hashes, paths).start()
    deadline = time.monotonic() + 60
    while running.progress.done == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert running.stop(timeout=60)
    assert 0 < running.progress.done <= len(paths) and not running.progress.is_running


def test_delete_removes_model_and_sidecars(tmp_path: Path) -> None:
    root = tmp_path / "Lora"
    model = write_lora(root / "sub" / "ink.safetensors", _lora_state(768))
    save_user_metadata(model, {"notes": "x"})
    (root / "sub" / "ink.preview.png").write_bytes(b"png")
    keep = write_lora(root / "sub" / "other.safetensors", _lora_state(768))
    removed = delete_model(model, [root])
    assert removed[0] == model.resolve() and len(removed) == 3
    assert sorted(p.name for p in (root / "sub").iterdir()) == [keep.name]


def test_delete_refuses_outside_folders_and_non_models(tmp_path: Path) -> None:
    root = tmp_path / "Lora"
    root.mkdir()
    outside = write_lora(tmp_path / "elsewhere" / "x.safetensors", _lora_state(768))
    for attempt in (outside, root / ".." / "elsewhere" / "x.safetensors", root):
        with pytest.raises(ModelInstallError) as error:
            delete_model(attempt, [root])
        assert error.value.field == "path"
    (root / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ModelInstallError):
        delete_model(root / "link" / "x.safetensors", [root])
    (root / "readme.txt").write_text("not a model")
    with pytest.raises(ModelInstallError):
        delete_model(root / "readme.txt", [root])
    assert outside.exists() and (root / "readme.txt").exists()


def test_unknown_kind_is_a_typed_error(tmp_path: Path, hashes: HashCache) -> None:
    with pytest.raises(ModelInstallError) as error:
        list_models("hypernetworks", [tmp_path], hashes)
    assert error.value.field == "kind"
    assert list_models("lora", [tmp_path / "does-not-exist"], hashes) == []
