"""The model-folder walker: linked folders and files are listed under the link's own path,
link loops end, dangling links and unreadable folders are skipped quietly; and every model
list (checkpoints, LoRA, VAE, embeddings, upscalers, ControlNet, the Models tab) sees them."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modules.models.catalog import list_models
from modules.models.controlnet import ControlNetLibrary
from modules.models.embeddings import EmbeddingLibrary
from modules.models.hashing import HashCache
from modules.models.lora import LoraLibrary
from modules.models.registry import CheckpointRegistry
from modules.models.upscalers import UpscalerLibrary
from modules.models.vae import find_vae_files
from modules.models.walk import folder_size, walk_files

_ST = (".safetensors",)


def _model(path: Path, value: float = 0.0) -> Path:
    """A small valid safetensors file (what it holds does not matter to a listing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"weight": torch.full((2, 2), value)}, str(path))
    return path


def _relatives(root: Path, **options) -> list[str]:
    return [hit.relative for hit in walk_files(root, _ST, **options)]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder on "another disk": two models, one in a subfolder, and a text file."""
    disk = tmp_path / "disk" / "ckpts"
    _model(disk / "Big.safetensors")
    _model(disk / "sub" / "deep.safetensors")
    (disk / "notes.txt").write_text("not a model")
    return disk


# --------------------------------------------------------------------------- the walker


def test_linked_folder_is_entered_and_named_by_the_link(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "models" / "Lora"
    _model(root / "own.safetensors")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    hits = walk_files(root, _ST)
    assert [hit.relative for hit in hits] == ["linked/Big.safetensors", "linked/sub/deep.safetensors",
                                              "own.safetensors"]
    assert hits[0].path == root / "linked" / "Big.safetensors"  # the link's path, not the target's
    assert hits[0].siblings == {"Big.safetensors", "sub", "notes.txt"}


def test_linked_file_is_listed_under_its_own_name(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "VAE"
    root.mkdir()
    (root / "alias.safetensors").symlink_to(outside / "Big.safetensors")
    hits = walk_files(root, _ST)
    assert [(hit.relative, hit.path) for hit in hits] == [("alias.safetensors", root / "alias.safetensors")]


def test_link_to_an_ancestor_ends_and_lists_each_file_once(tmp_path: Path) -> None:
    root = tmp_path / "Lora"
    _model(root / "a.safetensors")
    _model(root / "sub" / "b.safetensors")
    (root / "sub" / "back").symlink_to(root, target_is_directory=True)  # sub/back/sub/back/... forever
    (root / "again").symlink_to(root / "sub", target_is_directory=True)  # a second way into sub
    assert _relatives(root) == ["a.safetensors", "sub/b.safetensors"]


def test_two_links_to_one_folder_list_it_once_and_a_real_folder_keeps_its_name(tmp_path: Path,
                                                                               outside: Path) -> None:
    root = tmp_path / "Lora"
    (root / "zz-real").mkdir(parents=True)
    _model(root / "zz-real" / "x.safetensors")
    (root / "aa-link").symlink_to(root / "zz-real", target_is_directory=True)  # sorts first, still loses
    (root / "one").symlink_to(outside, target_is_directory=True)
    (root / "two").symlink_to(outside, target_is_directory=True)
    assert _relatives(root) == ["one/Big.safetensors", "one/sub/deep.safetensors", "zz-real/x.safetensors"]


def test_dangling_and_looping_links_are_skipped_with_a_debug_line(tmp_path: Path, caplog) -> None:
    root = tmp_path / "Lora"
    _model(root / "ok.safetensors")
    (root / "gone.safetensors").symlink_to(tmp_path / "deleted.safetensors")
    (root / "gone-dir").symlink_to(tmp_path / "unplugged-disk", target_is_directory=True)
    (root / "self.safetensors").symlink_to(root / "self.safetensors")  # ELOOP
    with caplog.at_level(logging.DEBUG, logger="modules.models.walk"):
        assert _relatives(root) == ["ok.safetensors"]
    skipped = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("gone.safetensors" in m for m in skipped) and any("gone-dir" in m for m in skipped)
    assert not [r for r in caplog.records if r.levelno > logging.DEBUG]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions and a non-root user")
def test_unreadable_folder_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "Lora"
    _model(root / "ok.safetensors")
    _model(root / "locked" / "secret.safetensors")
    (root / "locked").chmod(0)
    try:
        assert _relatives(root) == ["ok.safetensors"]
    finally:
        (root / "locked").chmod(0o755)


def test_missing_root_hidden_entries_and_order(tmp_path: Path) -> None:
    assert walk_files(tmp_path / "nowhere", _ST) == []
    root = tmp_path / "Lora"
    for name in ("b.safetensors", "A.SAFETENSORS", "c/z.safetensors", ".hidden/x.safetensors",
                 ".part.safetensors", "B/a.safetensors", "x.txt"):
        _model(root / name)
    # Case-blind by the whole path, as the lists always sorted ("." sorts before "/").
    assert _relatives(root) == ["A.SAFETENSORS", "b.safetensors", "B/a.safetensors", "c/z.safetensors"]
    assert len(walk_files(root, None, include_hidden=True)) == 7


def test_model_folders_are_listed_whole_and_config_folders_skipped(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "Stable-diffusion"
    pipe = tmp_path / "disk" / "pipe"
    _model(pipe / "unet" / "diffusion_pytorch_model.safetensors")
    (pipe / "model_index.json").write_text("{}")
    _model(root / "single.safetensors")
    _model(root / "single.config" / "unet" / "diffusion_pytorch_model.safetensors")
    (root / "linked-pipe").symlink_to(pipe, target_is_directory=True)
    hits = walk_files(root, _ST, folder_marker="model_index.json", skip_folder_suffixes=(".config",))
    assert [(hit.relative, hit.is_folder) for hit in hits] == [("linked-pipe", True), ("single.safetensors", False)]
    expected = sum(f.stat().st_size for f in pipe.rglob("*") if f.is_file())
    assert folder_size(root / "linked-pipe") == expected > 0


# --------------------------------------------------------------------------- every model list


def test_every_model_list_sees_a_linked_folder(tmp_path: Path, outside: Path) -> None:
    models = tmp_path / "models"
    (outside / "sub" / "back").symlink_to(outside, target_is_directory=True)  # a loop on the other disk
    for kind in ("Stable-diffusion", "Lora", "VAE", "embeddings", "ESRGAN", "ControlNet"):
        (models / kind).mkdir(parents=True)
        (models / kind / "linked").symlink_to(outside, target_is_directory=True)
    hashes = HashCache(tmp_path / "hashes.json")

    checkpoints = CheckpointRegistry([models / "Stable-diffusion"], hashes).items
    assert [c.name for c in checkpoints] == ["linked/Big", "linked/sub/deep"]
    assert checkpoints[0].path == models / "Stable-diffusion" / "linked" / "Big.safetensors"
    loras = LoraLibrary([models / "Lora"], hashes)
    assert [lora.relative for lora in loras.files] == ["linked/Big", "linked/sub/deep"]
    assert loras.find("linked/sub/deep").name == "deep"
    assert [v.name for v in find_vae_files([models / "VAE"])] == ["Big.safetensors", "deep.safetensors"]
    assert [e.name for e in EmbeddingLibrary([models / "embeddings"], hashes).files] == ["Big", "deep"]
    assert UpscalerLibrary([models / "ESRGAN"], allow_pickle=False).names()[-2:] == ["Big", "deep"]
    assert ControlNetLibrary([models / "ControlNet"]).names() == ["Big", "deep"]
    listed = list_models("lora", [models / "Lora"], hashes, read_headers=False)
    assert [(e.name, e.size_bytes) for e in listed] == [
        ("linked/Big", (outside / "Big.safetensors").stat().st_size),
        ("linked/sub/deep", (outside / "sub" / "deep.safetensors").stat().st_size)]


def test_controlnet_folder_behind_a_link(tmp_path: Path) -> None:
    target = tmp_path / "disk" / "canny"
    _model(target / "diffusion_pytorch_model.safetensors")
    (target / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel", "cross_attention_dim": 768}))
    root = tmp_path / "ControlNet"
    root.mkdir()
    (root / "canny").symlink_to(target, target_is_directory=True)
    library = ControlNetLibrary([root])
    assert library.names() == ["canny"]
    found = library.find("canny")
    assert (found.path, found.context_width) == (root / "canny", 768)
