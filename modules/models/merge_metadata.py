"""What a checkpoint merge carries along besides tensors: A1111's merge metadata and config files.

A1111 (``modules/extras.py: run_modelmerger``) records in a merged model's safetensors
metadata which models went in ("sd_merge_models", keyed by SHA-256) and how
("sd_merge_recipe"); model-sharing sites read both. It also copies the inputs' ``.yaml``
config beside the result so the merged model loads with the right architecture.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from modules.models.registry import CONFIG_DIR_SUFFIX

__all__ = ["copy_config", "legacy_hash", "merge_models_metadata"]


def legacy_hash(path: Path) -> str:
    """A1111's old "model hash" (``sd_models.model_hash``): the first 8 hex digits of the
    SHA-256 of the 64 KiB at offset 1 MiB (of nothing, for smaller files). Cheap to compute;
    kept because A1111 records it as "legacy_hash"."""
    with path.open("rb") as handle:
        handle.seek(0x100000)
        return hashlib.sha256(handle.read(0x10000)).hexdigest()[:8]


def _parse_json(value: str | None) -> object:
    """A metadata value stored as JSON text, parsed as A1111 does on reading; other text as-is."""
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value


def merge_models_metadata(
    inputs: Sequence[tuple[Path, Mapping[str, str]]], hash_of: Callable[[Path], str] | None = None
) -> dict[str, object]:
    """The "sd_merge_models" entry (A1111's ``add_model_metadata``) for the merged inputs.

    Args:
        inputs: each input file with its safetensors ``__metadata__`` (empty for pickles).
        hash_of: full SHA-256 of a file; None keys the entries by file name instead, as
            hashing several GB takes a while.

    Returns:
        ``{sha256: {"name", "legacy_hash", "sd_merge_recipe"}}`` for every input, plus the
        entries the inputs' own "sd_merge_models" carry, so a merge of merges keeps its history.
    """
    models: dict[str, object] = {}
    for path, metadata in inputs:
        key = hash_of(path) if hash_of is not None else path.name
        models[key] = {"name": path.name, "legacy_hash": legacy_hash(path),
                       "sd_merge_recipe": _parse_json(metadata.get("sd_merge_recipe"))}
        nested = _parse_json(metadata.get("sd_merge_models"))
        if isinstance(nested, dict):
            models.update(nested)
    return models


def copy_config(candidates: Sequence[Path], output: Path) -> Path | None:
    """Copy the configs of the first candidate that has any beside ``output``.

    A1111's ``create_config`` copies ``<stem>.yaml``; our loader also reads a checkpoint's
    diffusers config folder ``<stem>.config/``, so both are copied (to ``<output stem>.yaml``
    and ``<output stem>.config/``).

    Returns:
        The candidate copied from, or None when none has a config.
    """
    for source in candidates:
        yaml_file = source.with_suffix(".yaml")
        folder = source.with_name(source.stem + CONFIG_DIR_SUFFIX)
        has_yaml, has_folder = yaml_file.is_file(), (folder / "model_index.json").is_file()
        if not (has_yaml or has_folder):
            continue
        if has_yaml:
            shutil.copyfile(yaml_file, output.with_suffix(".yaml"))
        if has_folder:
            shutil.copytree(folder, output.with_name(output.stem + CONFIG_DIR_SUFFIX), dirs_exist_ok=True)
        return source
    return None
