"""Model file guards: a broken, fake or dangerous file is refused with a typed error naming it.

Every file here is written into ``tmp_path``; nothing is read from a model hub.
"""

from __future__ import annotations

import json
import os
import pathlib
import struct
import time
import tracemalloc
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modules.models.files import (
    MAX_HEADER_BYTES,
    ModelFileError,
    load_state_dict,
    read_safetensors_header,
)

# --------------------------------------------------------------------------- helpers


def _tensors() -> dict[str, torch.Tensor]:
    return {
        "model.weight": torch.arange(1024, dtype=torch.float32).reshape(32, 32),
        "model.bias": torch.linspace(-1, 1, 256),
    }


def _valid_file(tmp_path: Path, name: str = "model.safetensors") -> tuple[Path, int]:
    """A small valid safetensors file and its header length."""
    path = tmp_path / name
    save_file(_tensors(), str(path), metadata={"format": "pt"})
    (header_len,) = struct.unpack("<Q", path.read_bytes()[:8])
    return path, header_len


def _raw_safetensors(path: Path, header: bytes, data: bytes = b"") -> Path:
    """A file with an 8-byte little-endian length, ``header`` and ``data``."""
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


def _expect_error(path: Path, kind: str) -> ModelFileError:
    """Both the header check and the loader refuse ``path`` with ``kind``, naming the file."""
    with pytest.raises(ModelFileError) as caught:
        read_safetensors_header(path)
    error = caught.value
    assert error.kind == kind, f"{error.kind}: {error}"
    assert error.path == path
    assert str(path) in str(error)
    with pytest.raises(ModelFileError) as caught_load:
        load_state_dict(path)
    assert caught_load.value.kind == kind
    return error


# --------------------------------------------------------------------------- valid files


def test_valid_file_header_and_tensors(tmp_path: Path) -> None:
    path, _ = _valid_file(tmp_path)
    header = read_safetensors_header(path)
    assert set(header.tensors) == {"model.weight", "model.bias"}
    assert header.shape("model.weight") == (32, 32)
    assert header.shape("missing") is None
    assert header.metadata == {"format": "pt"}
    loaded = load_state_dict(path)
    for key, value in _tensors().items():
        assert torch.equal(loaded[key], value)


def test_missing_file_is_typed(tmp_path: Path) -> None:
    _expect_error(tmp_path / "nope.safetensors", "missing")


def test_unsupported_extension_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 60)
    with pytest.raises(ModelFileError) as caught:
        load_state_dict(path)
    assert caught.value.kind == "unsupported" and caught.value.path == path


# --------------------------------------------------------------------------- truncation


@pytest.mark.parametrize("cut", ["0", "7", "8", "header-1", "header", "header+1", "half", "size-1"])
def test_truncated_file_is_typed_and_names_the_file(tmp_path: Path, cut: str) -> None:
    full, header_len = _valid_file(tmp_path, "full.safetensors")
    data = full.read_bytes()
    end = 8 + header_len
    keep = {
        "0": 0, "7": 7, "8": 8, "header-1": end - 1, "header": end, "header+1": end + 1,
        "half": len(data) // 2, "size-1": len(data) - 1,
    }[cut]
    if cut == "half":
        assert keep > end + 1, "the half-way cut must land inside the tensor data"
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[:keep])
    error = _expect_error(path, "truncated")
    assert "cut.safetensors" in str(error)


@pytest.mark.parametrize("header_len", [2**63, 2**40, MAX_HEADER_BYTES + 1])
def test_huge_header_length_is_refused_without_allocating(tmp_path: Path, header_len: int) -> None:
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", header_len) + b'{"a": 1}' * 4)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ModelFileError) as caught:
            read_safetensors_header(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1.0
    assert peak < 1024 * 1024, f"allocated {peak} bytes for a {path.stat().st_size}-byte file"
    assert caught.value.kind == "header_too_large"
    assert caught.value.path == path and str(header_len) in str(caught.value)


def test_header_length_past_end_of_file_is_truncated_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "short.safetensors"
    declared = MAX_HEADER_BYTES - 1  # under the format cap, but far beyond this 40-byte file
    path.write_bytes(struct.pack("<Q", declared) + b"{" + b" " * 31)
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError) as caught:
            read_safetensors_header(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.kind == "truncated"
    assert peak < 1024 * 1024


# --------------------------------------------------------------------------- malformed headers


@pytest.mark.parametrize("header", [b"[1, 2, 3]", b'"model"', b"42", b"null", b"true"])
def test_header_that_is_json_but_not_an_object(tmp_path: Path, header: bytes) -> None:
    path = _raw_safetensors(tmp_path / "list.safetensors", header)
    error = _expect_error(path, "not_safetensors")
    assert "JSON object" in error.detail


def test_header_that_is_not_json(tmp_path: Path) -> None:
    path = _raw_safetensors(tmp_path / "binary.safetensors", bytes(range(200, 256)) * 2, b"\0" * 16)
    _expect_error(path, "not_safetensors")


def test_data_offsets_beyond_end_of_file(tmp_path: Path) -> None:
    header = json.dumps({
        "ok": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "cut.tensor": {"dtype": "F32", "shape": [1000], "data_offsets": [8, 4008]},
    }).encode()
    path = _raw_safetensors(tmp_path / "offsets.safetensors", header, b"\0" * 64)
    error = _expect_error(path, "truncated")
    assert "cut.tensor" in error.detail


@pytest.mark.parametrize("offsets", [[8, 0], [0], [-4, 0], None, [0, 4, 8]])
def test_malformed_data_offsets(tmp_path: Path, offsets: object) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": offsets}}).encode()
    path = _raw_safetensors(tmp_path / "malformed.safetensors", header, b"\0" * 8)
    error = _expect_error(path, "not_safetensors")
    assert "'w'" in error.detail


def test_string_data_offsets_are_a_typed_error(tmp_path: Path) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": ["0", "4"]}}).encode()
    path = _raw_safetensors(tmp_path / "strings.safetensors", header, b"\0" * 4)
    _expect_error(path, "not_safetensors")


def test_shape_disagreeing_with_offsets_is_a_typed_error(tmp_path: Path) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [100], "data_offsets": [0, 4]}}).encode()
    path = _raw_safetensors(tmp_path / "shape.safetensors", header, b"\0" * 4)
    with pytest.raises(ModelFileError) as caught:
        load_state_dict(path)
    assert caught.value.path == path


# --------------------------------------------------------------------------- impostors


LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa\n"
    "size 4265146304\n"
)


def test_git_lfs_pointer(tmp_path: Path) -> None:
    path = tmp_path / "v1-5-pruned-emaonly.safetensors"
    path.write_text(LFS_POINTER, encoding="ascii")
    error = _expect_error(path, "lfs_pointer")
    assert "git lfs" in error.detail


@pytest.mark.parametrize("page", [
    "<!DOCTYPE html>\n<html lang=\"en\"><head><title>Sign in</title></head><body>Log in to download</body></html>",
    "\n\n  <html><head><title>404</title></head><body>Not Found</body></html>\n",
    "<!doctype html><title>x</title>",
])
def test_html_page_saved_as_model(tmp_path: Path, page: str) -> None:
    path = tmp_path / "model.safetensors"
    path.write_text(page, encoding="utf-8")
    _expect_error(path, "html_page")


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy-pickle"])
def test_torch_pickle_renamed_to_safetensors_is_not_loaded(tmp_path: Path, zipped: bool) -> None:
    path = tmp_path / "renamed.safetensors"
    torch.save({"state_dict": _tensors()}, path, _use_new_zipfile_serialization=zipped)
    with pytest.raises(ModelFileError) as caught:
        read_safetensors_header(path)
    assert caught.value.kind in ("not_safetensors", "header_too_large", "truncated")
    assert caught.value.path == path
    with pytest.raises(ModelFileError):
        load_state_dict(path, allow_pickle=True)  # the extension decides: never unpickled


# --------------------------------------------------------------------------- pickle policy


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin"])
def test_pickle_refused_by_default(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"model{suffix}"
    torch.save({"state_dict": _tensors()}, path)
    with pytest.raises(ModelFileError) as caught:
        load_state_dict(path)
    assert caught.value.kind == "pickle_refused"
    assert "--allow-pickle" in str(caught.value)
    assert str(path) in str(caught.value)


def test_pickle_loads_with_allow_pickle(tmp_path: Path) -> None:
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {**_tensors(), "step": 7}, "epoch": 3, "global_step": 1000}, path)
    loaded = load_state_dict(path, allow_pickle=True)
    assert set(loaded) == set(_tensors())  # non-tensor entries dropped, wrapper removed
    for key, value in _tensors().items():
        assert torch.equal(loaded[key], value)


def test_bare_state_dict_pickle_loads_with_allow_pickle(tmp_path: Path) -> None:
    path = tmp_path / "pytorch_model.bin"
    torch.save(_tensors(), path)
    loaded = load_state_dict(path, allow_pickle=True)
    assert torch.equal(loaded["model.bias"], _tensors()["model.bias"])


class _Payload:
    """Pickles as a call of ``func(*args)``: what a malicious checkpoint would run on load."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


def _payloads(marker: Path) -> dict[str, _Payload]:
    return {
        "exec": _Payload(exec, f"open({str(marker)!r}, 'w').write('pwned')"),
        "os.system": _Payload(os.system, f"touch '{marker}'"),
        "pathlib": _Payload(pathlib.Path(marker).write_text, "pwned"),
    }


@pytest.mark.parametrize("payload", ["exec", "os.system", "pathlib"])
def test_malicious_pickle_is_rejected_even_when_allowed(tmp_path: Path, payload: str) -> None:
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2), "evil": _payloads(marker)[payload]}}, path)
    for allow in (False, True):
        with pytest.raises(ModelFileError) as caught:
            load_state_dict(path, allow_pickle=allow)
        assert caught.value.kind == ("pickle_unsafe" if allow else "pickle_refused")
        assert caught.value.path == path
        assert not marker.exists(), "loading the checkpoint ran its code"
    # The payload is live: an unsafe load would have run it (proves the test can fail).
    torch.load(path, weights_only=False)
    assert marker.exists()
