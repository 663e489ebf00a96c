"""Blocked checkpoints: refused pickles, impostors and files that failed to load are listed with
their reason, never the default, and every message a client may read is free of paths and
terminal codes."""

from __future__ import annotations

import pickle
from fractions import Fraction
from pathlib import Path

import pytest

from modules.models.files import PICKLE_REFUSED, ModelFileError, load_pickle, public_text
from modules.models.hashing import HashCache
from modules.models.manager import ModelManager
from modules.models.registry import CheckpointRegistry, ModelNotFoundError, looks_like_path
from modules.models.vae import find_vae
from tests.conftest import CPU_FP32
from tests.models.test_registry import copy_checkpoint
from tests.security.hostile_files import write_hostile_checkpoints


@pytest.fixture
def hostile(tmp_path: Path, tiny_checkpoint_dir: Path) -> tuple[Path, dict[str, Path]]:
    root = tmp_path / "Stable-diffusion"
    good = copy_checkpoint(tiny_checkpoint_dir / "tiny-sd15.safetensors", root, "zz-good")
    return root, write_hostile_checkpoints(root, good)


def _registry(root: Path, allow_pickle: bool = False) -> CheckpointRegistry:
    return CheckpointRegistry([root], HashCache(root.parent / "hashes.json"), allow_pickle=allow_pickle)


def test_impostors_and_refused_pickles_are_blocked_and_never_the_default(hostile) -> None:
    root, _ = hostile
    registry = _registry(root)
    reasons = {info.name: registry.blocked(info) for info in registry.items}
    assert reasons["aa-pickle"] == PICKLE_REFUSED
    for name in ("ab-lfs-pointer", "ac-truncated", "ad-html-page", "ae-not-a-model"):
        assert reasons[name] and str(root) not in reasons[name], name
    assert reasons["af-partial"] is None and reasons["zz-good"] is None  # only loading finds the partial one out
    assert registry.default().name == "af-partial"
    assert [info.name for info in registry.usable()] == ["af-partial", "zz-good"]
    # With --allow-pickle the pickle is loadable (weights_only), so it is listed and first.
    assert _registry(root, allow_pickle=True).default().name == "aa-pickle"


def test_a_default_that_fails_to_load_is_blocked_and_the_next_one_is_used(hostile) -> None:
    root, files = hostile
    registry = _registry(root)
    model = ModelManager(registry, CPU_FP32).get()
    assert model.info.name == "zz-good"
    partial = next(info for info in registry.items if info.name == "af-partial")
    assert "lacks weights" in registry.blocked(partial)
    assert registry.default().name == "zz-good"
    registry.refresh()  # a rescan does not forget the failure...
    assert registry.blocked(next(i for i in registry.items if i.name == "af-partial")) is not None
    # ...but a file that changed (fixed, downloaded again) is tried again.
    files["af-partial"].write_bytes((root / "zz-good.safetensors").read_bytes())
    registry.refresh()
    assert registry.blocked(next(i for i in registry.items if i.name == "af-partial")) is None


def test_a_named_checkpoint_that_fails_is_an_error_not_a_fallback(hostile) -> None:
    root, files = hostile
    with pytest.raises(ModelFileError) as caught:
        ModelManager(_registry(root), CPU_FP32).get("af-partial")
    assert caught.value.path == files["af-partial"]
    assert caught.value.public_message.startswith("af-partial.safetensors: lacks weights")
    assert str(root) not in caught.value.public_message


def test_paths_are_refused_with_one_message_whether_they_exist_or_not(hostile, tmp_path: Path) -> None:
    root, _ = hostile
    registry = _registry(root)
    messages = set()
    for query in (str(root / "zz-good.safetensors"), str(root / "nope.safetensors"), "/etc/passwd",
                  "../Stable-diffusion/zz-good", "~/x.safetensors", "C:\\models\\x.safetensors"):
        assert looks_like_path(query), query
        with pytest.raises(ModelNotFoundError) as caught:
            registry.find(query)
        messages.add(str(caught.value))
    assert len(messages) == 1 and str(tmp_path) not in messages.pop()
    assert not looks_like_path("SD15/ink") and not looks_like_path("zz-good.safetensors [0123456789]")


def test_vaes_are_found_by_name_only(tmp_path: Path) -> None:
    folder = tmp_path / "VAE"
    folder.mkdir()
    (folder / "kl-f8.safetensors").write_bytes(b"x")
    assert find_vae("kl-f8", [folder]).path == folder / "kl-f8.safetensors"
    assert find_vae("kl-f8.safetensors", [folder]).name == "kl-f8.safetensors"
    with pytest.raises(ModelNotFoundError) as by_path:
        find_vae(str(folder / "kl-f8.safetensors"), [folder])
    with pytest.raises(ModelNotFoundError) as missing:
        find_vae("other.safetensors", [folder])
    for error in (by_path, missing):
        assert str(tmp_path) not in str(error.value) and "models/VAE" in str(error.value)


def test_public_text_drops_terminal_codes_and_folders() -> None:
    text = ("\x1b[1mdo those steps only if you trust the source\x1b[0m: /home/ann/models/x.safetensors, "
            "C:\\Users\\ann\\y.ckpt and (/etc/passwd); see https://pytorch.org/docs/load.html or models/VAE")
    cleaned = public_text(text)
    assert "\x1b" not in cleaned and "/home/" not in cleaned and "Users" not in cleaned and "/etc" not in cleaned
    assert "x.safetensors" in cleaned and "y.ckpt" in cleaned and "https://pytorch.org/docs/load.html" in cleaned
    assert "models/VAE" in cleaned


def test_an_unsafe_pickle_is_refused_without_torchs_coloured_text(tmp_path: Path) -> None:
    path = tmp_path / "odd.ckpt"
    # Protocol 2, as torch.save writes: torch then names the global it refused, in bold terminal codes.
    path.write_bytes(pickle.dumps({"ratio": Fraction(1, 2)}, protocol=2))
    with pytest.raises(ModelFileError) as caught:
        load_pickle(path, allow_pickle=True)
    assert caught.value.kind == "pickle_unsafe"
    assert "\x1b" not in caught.value.detail and "fractions.Fraction" in caught.value.detail
    assert caught.value.public_message.startswith("odd.ckpt: ") and str(tmp_path) not in caught.value.public_message
