"""Textual-inversion files: the layouts A1111 and diffusers write, the pickle policy, hashes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modules.models.embeddings import EmbeddingLibrary, parse_embedding
from modules.models.files import ModelFileError
from modules.models.hashing import HashCache
from tests.network_files import write_embedding


def _library(root: Path, allow_pickle: bool = False) -> EmbeddingLibrary:
    return EmbeddingLibrary([root], HashCache(root.parent / "hashes.json"), allow_pickle)


def test_reads_a1111_sdxl_and_diffusers_layouts(tmp_path: Path) -> None:
    root = tmp_path / "embeddings"
    write_embedding(root / "sd1-style.safetensors", (768,), vectors=3)
    write_embedding(root / "xl" / "xl-style.safetensors", (768, 1280), vectors=2)
    save_file({"<cat-toy>": torch.randn(768)}, str(root / "diffusers-toy.safetensors"))
    library = _library(root)

    sd1 = library.load(library.find("sd1-style"))
    assert sd1.length == 3 and sd1.for_width(768).shape == (3, 768) and sd1.for_width(1280) is None
    xl = library.load(library.find("xl-style"))
    assert xl.length == 2 and xl.for_width(768).shape == (2, 768) and xl.for_width(1280).shape == (2, 1280)
    assert library.load(library.find("diffusers-toy")).for_width(768).shape == (1, 768)


def test_pickled_embeddings_load_only_with_allow_pickle(tmp_path: Path) -> None:
    root = tmp_path / "embeddings"
    write_embedding(root / "old.pt", (768,), vectors=4)
    with pytest.raises(ModelFileError, match="--allow-pickle") as refused:
        _library(root).load(_library(root).find("old"))
    assert refused.value.kind == "pickle_refused"

    embedding = _library(root, allow_pickle=True).load(_library(root).find("old"))
    assert embedding.name == "old" and embedding.for_width(768).shape == (4, 768)


def test_files_that_are_not_embeddings_are_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "two.safetensors"
    with pytest.raises(ModelFileError, match="not a textual-inversion embedding"):
        parse_embedding("two", {"a": torch.zeros(2, 4), "b": torch.zeros(2, 4)}, path)
    with pytest.raises(ModelFileError, match="different lengths"):
        parse_embedding("xl", {"clip_l": torch.zeros(2, 768), "clip_g": torch.zeros(3, 1280)}, path)
    with pytest.raises(ModelFileError, match="not a textual-inversion"):
        parse_embedding("ints", {"emb_params": torch.zeros(2, 4, dtype=torch.int64)}, path)


def test_reload_follows_a_changed_file_and_hash_is_the_file_sha256(tmp_path: Path) -> None:
    root = tmp_path / "embeddings"
    path = write_embedding(root / "style.safetensors", (768,), vectors=1, seed=1)
    library = _library(root)
    first = library.load(library.find("style"))
    assert library.load(library.find("style")) is first  # cached
    assert library.short_hash(library.find("style")) == hashlib.sha256(path.read_bytes()).hexdigest()[:12]

    write_embedding(path, (768,), vectors=5, seed=2)
    os.utime(path, (1, 1))  # a different mtime even on coarse clocks
    assert library.load(library.find("style")).length == 5


def test_an_embedding_fits_only_a_model_with_its_encoders() -> None:
    path = Path("x.safetensors")
    sd1 = parse_embedding("sd1", {"emb_params": torch.zeros(2, 768)}, path)
    xl = parse_embedding("xl", {"clip_l": torch.zeros(2, 768), "clip_g": torch.zeros(2, 1280)}, path)
    assert sd1.fits((768,)) and not sd1.fits((768, 1280)) and not sd1.fits((1024,))
    assert xl.fits((768, 1280)) and not xl.fits((768,))  # A1111 skips SDXL embeddings on SD1.x
