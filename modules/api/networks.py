"""A1111's extra-network listings: ``GET /sdapi/v1/loras`` and ``GET /sdapi/v1/embeddings``,
with their refresh routes, in the response shapes A1111 clients read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from modules.models.embeddings import Embedding, EmbeddingFile, EmbeddingLibrary
from modules.models.files import SAFETENSORS_SUFFIXES, ModelFileError, read_safetensors_header
from modules.models.lora import LoraFile

if TYPE_CHECKING:
    from modules.studio import Studio

__all__ = ["add_network_routes", "describe_embeddings", "describe_lora"]


def describe_lora(lora: LoraFile) -> dict[str, Any]:
    """One entry of ``/sdapi/v1/loras``: name, alias (kohya's ``ss_output_name``), path, metadata."""
    metadata: dict[str, Any] = {}
    if lora.path.suffix.lower() in SAFETENSORS_SUFFIXES:
        try:
            metadata = dict(read_safetensors_header(lora.path).metadata)
        except ModelFileError:
            metadata = {}
    return {"name": lora.name, "alias": metadata.get("ss_output_name", lora.name), "path": str(lora.path),
            "metadata": metadata}


def _embedding_entry(embedding: Embedding) -> dict[str, Any]:
    return {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None,
            "shape": int(embedding.vectors[0].shape[-1]), "vectors": embedding.length}


def describe_embeddings(library: EmbeddingLibrary, widths: tuple[int, ...] | None) -> dict[str, Any]:
    """``/sdapi/v1/embeddings``: ``{"loaded": {name: entry}, "skipped": {name: entry}}``.

    "loaded" are those the current model (text-encoder ``widths``; None when no model is in
    memory) can use; "skipped" the rest, with an ``error`` when the file cannot be read.
    """
    loaded: dict[str, Any] = {}
    skipped: dict[str, Any] = {}
    for file in library.files:
        _sort_embedding(library, file, widths, loaded, skipped)
    return {"loaded": loaded, "skipped": skipped}


def _sort_embedding(library: EmbeddingLibrary, file: EmbeddingFile, widths: tuple[int, ...] | None,
                    loaded: dict[str, Any], skipped: dict[str, Any]) -> None:
    try:
        embedding = library.load(file)
    except ModelFileError as error:
        skipped[file.name] = {"error": error.detail}
        return
    fits = widths is None or embedding.fits(widths)
    (loaded if fits else skipped)[file.name] = _embedding_entry(embedding)


def _current_widths(studio: Studio) -> tuple[int, ...] | None:
    models = studio.context.models.loaded
    if not models:
        return None
    pipeline = models[-1].pipeline
    encoders = (pipeline.text_encoder, getattr(pipeline, "text_encoder_2", None))
    return tuple(encoder.config.hidden_size for encoder in encoders if encoder is not None)


def add_network_routes(router: APIRouter, studio: Studio) -> None:
    """``/loras``, ``/refresh-loras``, ``/embeddings``, ``/refresh-embeddings``."""
    models = studio.context.models

    @router.get("/loras")
    def loras() -> list[dict[str, Any]]:
        return [describe_lora(lora) for lora in models.loras.files]

    @router.post("/refresh-loras")
    def refresh_loras() -> None:
        models.loras.refresh()

    @router.get("/embeddings")
    def embeddings() -> dict[str, Any]:
        return describe_embeddings(models.embeddings, _current_widths(studio))

    @router.post("/refresh-embeddings")
    def refresh_embeddings() -> None:
        models.embeddings.refresh()
