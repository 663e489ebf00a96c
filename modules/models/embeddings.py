"""Textual-inversion embeddings (Gal et al. 2022, "An Image is Worth One Word"): learned
token vectors used by writing the file's name in a prompt.

Files live in ``models/embeddings`` (subfolders allowed); the name is the file stem. Layouts
read, as A1111 writes and reads them:

* safetensors ``{"emb_params": (n, D)}`` (A1111's own training) or any single (n, D) tensor;
* safetensors ``{"clip_l": (n, 768), "clip_g": (n, 1280)}`` for SDXL's two text encoders;
* pickles (``.pt``/``.bin``, only with ``--allow-pickle``): A1111's ``{"string_to_param":
  {"*": (n, D)}}``, or diffusers' ``{token: (D,)}``.

An encoder takes the vectors whose width D equals its hidden size, so one SDXL file serves
both encoders, and an SD1 embedding is recognised as unusable on SDXL instead of crashing.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modules.models.files import PICKLE_SUFFIXES, SAFETENSORS_SUFFIXES, ModelFileError, load_pickle, load_state_dict
from modules.models.hashing import HashCache
from modules.models.walk import walk_files

__all__ = ["TI_HASH_LENGTH", "Embedding", "EmbeddingFile", "EmbeddingLibrary", "parse_embedding"]

#: A1111's "TI hashes" show the first 12 hex digits of the file's SHA-256.
TI_HASH_LENGTH = 12
_PICKLE_EMBEDDING_SUFFIXES = (".pt", ".bin")


@dataclass(frozen=True)
class EmbeddingFile:
    """An embedding on disk; ``name`` (the file stem) is what a prompt writes."""

    name: str
    path: Path


@dataclass(frozen=True)
class Embedding:
    """An embedding's vectors: one (n, D) tensor per text-encoder width D, all with the same n."""

    name: str
    vectors: tuple[torch.Tensor, ...]

    @property
    def length(self) -> int:
        """Tokens it takes in a prompt (A1111 shows it as "vectors")."""
        return int(self.vectors[0].shape[0])

    def for_width(self, width: int) -> torch.Tensor | None:
        """The (n, width) vectors for a text encoder of hidden size ``width``, or None."""
        return next((v for v in self.vectors if v.shape[-1] == width), None)

    def fits(self, widths: Sequence[int]) -> bool:
        """Whether a model whose text encoders have these widths can use it: one vector set per
        encoder, each of its width (A1111 skips an SDXL embedding on SD1.x, though its clip_l
        part has SD1's width, and an SD1.x one on SDXL)."""
        return len(self.vectors) == len(widths) and all(self.for_width(width) is not None for width in widths)


def _as_matrix(tensor: Any, path: Path) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor) or tensor.ndim not in (1, 2) or not tensor.is_floating_point():
        raise ModelFileError(path, "unsupported", "is not a textual-inversion embedding (no (n, D) float tensor)")
    return tensor.detach().float().reshape(-1, tensor.shape[-1])


def parse_embedding(name: str, data: Mapping[str, Any], path: Path) -> Embedding:
    """Find the vectors in a loaded embedding file (see the module docstring for layouts).

    Raises:
        ModelFileError: no recognisable vectors, or SDXL parts of different lengths.
    """
    if "clip_l" in data and "clip_g" in data:
        tensors = [_as_matrix(data["clip_l"], path), _as_matrix(data["clip_g"], path)]
        if tensors[0].shape[0] != tensors[1].shape[0]:
            raise ModelFileError(path, "unsupported", "has clip_l and clip_g vectors of different lengths")
        return Embedding(name, tuple(tensors))
    params = data.get("string_to_param")
    if isinstance(params, Mapping) and params:
        return Embedding(name, (_as_matrix(next(iter(params.values())), path),))
    if "emb_params" in data:
        return Embedding(name, (_as_matrix(data["emb_params"], path),))
    tensors = [value for value in data.values() if isinstance(value, torch.Tensor)]
    if len(tensors) == 1:
        return Embedding(name, (_as_matrix(tensors[0], path),))
    raise ModelFileError(path, "unsupported", "is not a textual-inversion embedding (no emb_params, "
                         "string_to_param or clip_l/clip_g vectors)")


class EmbeddingLibrary:
    """The embeddings under ``roots``, loaded on first use and kept while the file is unchanged."""

    def __init__(self, roots: Sequence[Path], hashes: HashCache, allow_pickle: bool = False) -> None:
        self.roots = [Path(r) for r in roots]
        self.hashes = hashes
        self.allow_pickle = allow_pickle
        self._files: dict[str, EmbeddingFile] = {}
        self._loaded: dict[Path, tuple[float, Embedding]] = {}
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> list[EmbeddingFile]:
        files: dict[str, EmbeddingFile] = {}
        suffixes = SAFETENSORS_SUFFIXES + _PICKLE_EMBEDDING_SUFFIXES
        for root in self.roots:
            for hit in walk_files(root, suffixes):
                files.setdefault(hit.path.stem, EmbeddingFile(hit.path.stem, hit.path))  # first one wins, as in A1111
        self._files = files
        return list(files.values())

    @property
    def files(self) -> list[EmbeddingFile]:
        return list(self._files.values())

    def find(self, name: str) -> EmbeddingFile | None:
        return self._files.get(name)

    def load(self, file: EmbeddingFile) -> Embedding:
        """The file's vectors (cached until the file changes).

        Raises:
            ModelFileError: unreadable, a refused pickle, or not an embedding.
        """
        mtime = file.path.stat().st_mtime
        with self._lock:
            cached = self._loaded.get(file.path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        if file.path.suffix.lower() in PICKLE_SUFFIXES:
            data = load_pickle(file.path, self.allow_pickle)
            if not isinstance(data, Mapping):
                raise ModelFileError(file.path, "unsupported", "is not a textual-inversion embedding")
        else:
            data = load_state_dict(file.path)
        embedding = parse_embedding(file.name, data, file.path)
        with self._lock:
            self._loaded[file.path] = (mtime, embedding)
        return embedding

    def short_hash(self, file: EmbeddingFile) -> str:
        """A1111's "TI hashes" entry: the first 12 hex digits of the file's SHA-256."""
        return self.hashes.sha256(file.path)[:TI_HASH_LENGTH]
