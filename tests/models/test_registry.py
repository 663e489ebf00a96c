"""The checkpoint list: names, lookups, short hashes, and broken files that do not break it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from pathlib import Path

import pytest

import modules.models.hashing as hashing
from modules.models.files import ModelFileError
from modules.models.hashing import HashCache
from modules.models.manager import ModelManager
from modules.models.registry import CheckpointRegistry, ModelNotFoundError, native_resolution
from tests.conftest import CPU_FP32


def copy_checkpoint(source: Path, dest_dir: Path, name: str) -> Path:
    """Copies ``source`` (a tiny .safetensors) and its "<stem>.config" folder as ``name``."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / f"{name}.safetensors"
    shutil.copyfile(source, target)
    shutil.copytree(source.with_name(source.stem + ".config"), dest_dir / f"{name}.config")
    return target


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def library(tmp_path: Path, tiny_checkpoint_dir: Path) -> tuple[CheckpointRegistry, Path]:
    """root/alpha, root/sub/deeper/beta (SD1.x), root/broken (truncated), plus non-model files."""
    root = tmp_path / "Stable-diffusion"
    source = tiny_checkpoint_dir / "tiny-sd15.safetensors"
    copy_checkpoint(source, root, "alpha")
    copy_checkpoint(source, root / "sub" / "deeper", "beta")
    data = source.read_bytes()
    (root / "broken.safetensors").write_bytes(data[: len(data) // 2])
    (root / "notes.txt").write_text("not a model")
    (root / "alpha.yaml").write_text("model: {}")
    (root / ".hidden.safetensors").write_bytes(data[:100])
    return CheckpointRegistry([root], HashCache(tmp_path / "cache" / "hashes.json")), root


# --------------------------------------------------------------------------- listing


def test_listing_names_are_relative_without_extension(library) -> None:
    registry, root = library
    by_name = {info.name: info for info in registry.items}
    assert set(by_name) == {"alpha", "broken", "sub/deeper/beta"}
    assert not any(".config" in name for name in by_name)
    assert by_name["sub/deeper/beta"].path == root / "sub" / "deeper" / "beta.safetensors"
    assert by_name["sub/deeper/beta"].filename == "beta.safetensors"
    assert by_name["sub/deeper/beta"].title("0123456789") == "sub/deeper/beta.safetensors [0123456789]"
    assert by_name["alpha"].config_dir == root / "alpha.config"
    assert by_name["sub/deeper/beta"].config_dir == root / "sub" / "deeper" / "beta.config"


def test_corrupt_file_is_listed_with_error_and_the_others_still_load(library) -> None:
    registry, root = library
    by_name = {info.name: info for info in registry.items}
    broken = by_name["broken"]
    assert broken.family is None
    # The entry names the file; its error says what is wrong in words without the path (clients read it).
    assert broken.error is not None and "truncated" in broken.error and str(root) not in broken.error
    for name in ("alpha", "sub/deeper/beta"):
        assert by_name[name].error is None and by_name[name].family.id == "sd15"
    manager = ModelManager(registry, CPU_FP32, keep_loaded=2)
    assert manager.get("alpha").family.id == "sd15"
    assert manager.get("sub/deeper/beta").info.path == by_name["sub/deeper/beta"].path
    with pytest.raises(ModelFileError) as caught:
        manager.get("broken")
    assert caught.value.path == broken.path


def test_default_skips_broken_files(tmp_path: Path, tiny_checkpoint_dir: Path) -> None:
    root = tmp_path / "models"
    root.mkdir()
    (root / "aaa-broken.safetensors").write_bytes(b"\0" * 7)
    copy_checkpoint(tiny_checkpoint_dir / "tiny-sd15.safetensors", root, "zzz-good")
    registry = CheckpointRegistry([root], HashCache(tmp_path / "hashes.json"))
    assert registry.default().name == "zzz-good"


def test_default_with_nothing_usable_names_the_folder(tmp_path: Path) -> None:
    (tmp_path / "bad.safetensors").write_bytes(b"\0" * 7)
    registry = CheckpointRegistry([tmp_path], HashCache(tmp_path / "hashes.json"))
    with pytest.raises(ModelNotFoundError, match="models/Stable-diffusion") as caught:
        registry.default()
    assert str(tmp_path) not in str(caught.value)  # the folder as users know it, not where the disk has it


def test_refresh_sees_added_and_removed_files(library, tiny_checkpoint_dir: Path) -> None:
    registry, root = library
    copy_checkpoint(tiny_checkpoint_dir / "tiny-sd15.safetensors", root / "new", "gamma")
    (root / "broken.safetensors").unlink()
    names = {info.name for info in registry.refresh()}
    assert names == {"alpha", "new/gamma", "sub/deeper/beta"}
    assert {info.name for info in registry.items} == names


@pytest.mark.parametrize("entry", [
    {"dtype": "F32", "data_offsets": [0, 4]},  # no "shape"
    {"dtype": "F32", "shape": None, "data_offsets": [0, 4]},
    {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},  # 1-D UNet input weight
    {"dtype": "F32", "shape": [1], "data_offsets": ["0", "4"]},
], ids=["no-shape", "null-shape", "1d-shape", "string-offsets"])
def test_malformed_header_entry_does_not_break_the_list(library, entry: dict) -> None:
    registry, root = library
    header = json.dumps({"model.diffusion_model.input_blocks.0.0.weight": entry}).encode()
    (root / "mangled.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    by_name = {info.name: info for info in registry.refresh()}
    assert by_name["mangled"].error is not None and by_name["alpha"].error is None


# --------------------------------------------------------------------------- find


def test_find_by_every_kind_of_reference(library) -> None:
    registry, root = library
    beta_path = root / "sub" / "deeper" / "beta.safetensors"
    short = registry.short_hash(registry.find("sub/deeper/beta"))
    queries = {
        "name": "sub/deeper/beta",
        "file name": "beta.safetensors",
        "stem": "beta",
        "title": f"sub/deeper/beta.safetensors [{short}]",
        "title without hash": "sub/deeper/beta.safetensors",
        "padded": "  sub/deeper/beta  ",
    }
    for kind, query in queries.items():
        assert registry.find(query).path == beta_path, kind
    assert registry.find("alpha").path == root / "alpha.safetensors"
    # A path, even to a file in the folder, is the owner's opt-in only (the CLI, --ckpt).
    with pytest.raises(ModelNotFoundError, match="names a file path"):
        registry.find(str(beta_path))
    assert registry.find(str(beta_path), allow_path=True).path == beta_path


def test_find_by_short_hash(library) -> None:
    registry, root = library
    # Make beta differ from alpha (they are byte copies) so the hash picks exactly one file.
    beta = root / "sub" / "deeper" / "beta.safetensors"
    with beta.open("r+b") as handle:
        handle.seek(-1, os.SEEK_END)
        last = handle.read(1)
        handle.seek(-1, os.SEEK_END)
        handle.write(bytes([last[0] ^ 1]))
    short = _sha256(beta)[:10]
    assert short != _sha256(root / "alpha.safetensors")[:10]
    assert registry.find(short).path == beta
    with pytest.raises(ModelNotFoundError):
        registry.find("0123456789")


def test_find_by_path_outside_the_folders(library, tiny_checkpoint_dir: Path, tmp_path: Path) -> None:
    registry, _ = library
    loose = copy_checkpoint(tiny_checkpoint_dir / "tiny-sd15.safetensors", tmp_path / "elsewhere", "loose")
    with pytest.raises(ModelNotFoundError) as refused:
        registry.find(str(loose))
    with pytest.raises(ModelNotFoundError) as missing:
        registry.find(str(tmp_path / "elsewhere" / "nothing.safetensors"))
    assert str(refused.value) == str(missing.value)  # a client cannot tell whether a path exists
    assert str(tmp_path) not in str(refused.value)
    info = registry.find(str(loose), allow_path=True)  # the owner's CLI or --ckpt
    assert info.path == loose.resolve() and info.name == "loose"
    assert info.family is not None and info.family.id == "sd15" and info.error is None
    assert info.config_dir == loose.with_name("loose.config").resolve()
    # Listed from then on, and found by its name like the others (a rescan keeps it).
    registry.refresh()
    assert registry.find("loose").path == loose.resolve()


def test_not_found_names_the_query_but_no_folder_on_the_disk(tmp_path: Path, library) -> None:
    _, root = library
    other = tmp_path / "more-models"
    other.mkdir()
    registry = CheckpointRegistry([root, other], HashCache(tmp_path / "hashes.json"))
    with pytest.raises(ModelNotFoundError) as caught:
        registry.find("dreamshaper_8")
    message = str(caught.value)
    assert "'dreamshaper_8'" in message and "models/Stable-diffusion" in message and "sd-models" in message
    assert str(root) not in message and str(other) not in message


# --------------------------------------------------------------------------- short hash and its cache


def test_short_hash_is_first_10_hex_of_sha256(library) -> None:
    registry, root = library
    info = registry.find("alpha")
    short = registry.short_hash(info)
    assert short == _sha256(root / "alpha.safetensors")[:10]
    assert len(short) == 10 and all(c in "0123456789abcdef" for c in short)


def test_hash_cache_is_written_and_reused_without_rereading(tmp_path: Path, monkeypatch) -> None:
    model = tmp_path / "model.safetensors"
    model.write_bytes(os.urandom(4096))
    cache_file = tmp_path / "cache" / "hashes.json"
    expected = _sha256(model)
    assert HashCache(cache_file).short_hash(model) == expected[:10]

    assert cache_file.is_file()
    entries = json.loads(cache_file.read_text())
    [entry] = entries.values()
    assert entry["sha256"] == expected and entry["size"] == 4096

    def must_not_read(path: Path) -> str:
        raise AssertionError(f"re-read {path}")

    monkeypatch.setattr(hashing, "sha256_of_file", must_not_read)
    second = HashCache(cache_file)
    assert second.short_hash(model) == expected[:10]
    assert second.sha256(model) == expected


def test_hash_cache_recomputes_after_mtime_or_size_change(tmp_path: Path, monkeypatch) -> None:
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"a" * 1000)
    cache_file = tmp_path / "hashes.json"
    HashCache(cache_file).sha256(model)

    calls: list[Path] = []
    real = hashing.sha256_of_file

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(hashing, "sha256_of_file", counting)

    stat = model.stat()
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # same bytes, newer mtime
    assert HashCache(cache_file).sha256(model) == _sha256(model)
    assert len(calls) == 1

    mtime_ns = model.stat().st_mtime_ns
    model.write_bytes(b"b" * 1001)  # new content and size, mtime put back
    os.utime(model, ns=(mtime_ns, mtime_ns))
    cache = HashCache(cache_file)
    assert cache.sha256(model) == _sha256(model) == hashlib.sha256(b"b" * 1001).hexdigest()
    assert len(calls) == 2
    assert cache.sha256(model) == _sha256(model)
    assert len(calls) == 2  # remembered again


def test_corrupt_hash_cache_file_is_ignored(tmp_path: Path) -> None:
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"weights")
    cache_file = tmp_path / "hashes.json"
    cache_file.write_text("{ not json")
    assert HashCache(cache_file).short_hash(model) == hashlib.sha256(b"weights").hexdigest()[:10]
    assert json.loads(cache_file.read_text())  # rewritten as valid JSON


@pytest.mark.parametrize("query", ["", "   ", "."])
def test_empty_or_folder_query_is_not_a_checkpoint(library, query: str) -> None:
    registry, _ = library
    with pytest.raises(ModelNotFoundError):
        registry.find(query)


def test_fallback_checkpoint_is_default_only_when_nothing_else_is(tmp_path: Path, tiny_checkpoint_dir: Path) -> None:
    source = tiny_checkpoint_dir / "tiny-sd15.safetensors"
    user_root, demo_root = tmp_path / "Stable-diffusion", tmp_path / "demo"
    copy_checkpoint(source, demo_root, "aaa-demo")
    user_root.mkdir()
    registry = CheckpointRegistry([user_root], HashCache(tmp_path / "h.json"), fallback_roots=[demo_root])
    assert registry.default().name == "aaa-demo"  # a fresh install: only the demo model
    copy_checkpoint(source, user_root, "zzz-mine")
    registry.refresh()
    assert [info.name for info in registry.items] == ["zzz-mine", "aaa-demo"]
    assert registry.default().name == "zzz-mine"  # the user's checkpoint wins, even sorted last
    assert registry.is_fallback(registry.find("aaa-demo")) and not registry.is_fallback(registry.find("zzz-mine"))


def test_fallback_root_inside_a_scanned_root_is_listed_once(tmp_path: Path, tiny_checkpoint_dir: Path) -> None:
    root = tmp_path / "Stable-diffusion"
    copy_checkpoint(tiny_checkpoint_dir / "tiny-sd15.safetensors", root / "demo", "aigen-demo")
    registry = CheckpointRegistry([root], HashCache(tmp_path / "h.json"), fallback_roots=[root / "demo"])
    assert [info.name for info in registry.items] == ["demo/aigen-demo"]
    assert registry.is_fallback(registry.items[0])


def test_native_resolution_reads_the_checkpoints_configs(library, tiny_checkpoint_dir: Path) -> None:
    registry, _ = library
    # The tiny fixtures: UNet sample_size 8, 4-level VAE -> 64 px; the shipped SD1.x configs -> 512.
    assert native_resolution(registry.find("alpha")) == 64
    info = registry.find("alpha")
    shipped = type(info)(info.name, info.path, info.family, info.size)
    assert native_resolution(shipped) == 512
