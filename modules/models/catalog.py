"""The data behind the Models tab: one table per kind of model file, plus the user's notes.

Listing stays fast with thousands of files (Forge #220: extra networks crawl with ~10 000 LoRAs):
it reads directories, one ``stat`` per model and, if asked, safetensors headers, never tensor
data. Hashes only come from the cache; hashing (seconds per GB) runs on a ``BackgroundHasher``.
Previews (``<stem>.preview.png`` ...) and the user-metadata sidecar ``<stem>.json`` follow
A1111's extra-networks layout and key names, so one folder works in both programs.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from modules.families.base import UnknownFamilyError
from modules.families.flux.lora_keys import is_flux_lora
from modules.families.registry import detect_diffusers_family, detect_family
from modules.models.files import (
    SAFETENSORS_SUFFIXES,
    ModelFileError,
    SafetensorsHeader,
    public_text,
    read_safetensors_header,
)
from modules.models.hashing import HashCache
from modules.models.install import MODEL_SUFFIXES, ModelInstallError
from modules.models.walk import FoundFile, folder_size, walk_files

__all__ = ["KINDS", "PREVIEW_SUFFIXES", "TRAINING_KEYS", "USER_METADATA_FIELDS", "BackgroundHasher", "HashProgress",
           "ModelEntry", "ModelInstallError", "delete_model", "list_models", "read_details", "read_user_metadata",
           "save_user_metadata", "sidecar_path"]

_ALL_SUFFIXES = tuple(dict.fromkeys((*SAFETENSORS_SUFFIXES, *MODEL_SUFFIXES)))
#: The file suffixes listed for each kind (those its loader accepts).
KINDS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "checkpoints": _ALL_SUFFIXES, "lora": _ALL_SUFFIXES, "vae": _ALL_SUFFIXES,
    "embeddings": (*SAFETENSORS_SUFFIXES, ".pt", ".bin"), "upscalers": (*SAFETENSORS_SUFFIXES, ".pth", ".pt", ".ckpt"),
    "controlnet": _ALL_SUFFIXES,
})
#: Preview image names tried in order, as ``<stem><suffix>``.
PREVIEW_SUFFIXES = (".preview.png", ".preview.jpg", ".preview.jpeg", ".preview.webp", ".png", ".jpg", ".jpeg",
                    ".webp")
#: A1111's user-metadata sidecar keys (the extra-networks "Edit metadata" dialog).
USER_METADATA_FIELDS = ("description", "activation text", "preferred weight", "negative text", "sd version", "notes")
#: kohya sd-scripts training metadata shown for LoRAs.
TRAINING_KEYS = ("ss_sd_model_name", "ss_base_model_version", "ss_network_module", "ss_network_dim",
                 "ss_network_alpha", "ss_num_epochs", "ss_epoch", "ss_steps", "ss_max_train_steps",
                 "ss_num_train_images", "ss_learning_rate", "ss_resolution", "ss_clip_skip", "ss_output_name",
                 "ss_training_started_at")
_TOP_TAGS = 10
_CONTEXT_BASES = {768: "SD1.x", 1024: "SD2.x", 2048: "SDXL"}  # cross-attention width -> base model
_FAMILY_PREFIX = {"lora": "LoRA", "embeddings": "Embedding", "controlnet": "ControlNet"}
_CONFIG_DIR_SUFFIX = ".config"  # a checkpoint's own diffusers configs (registry.CONFIG_DIR_SUFFIX), not a model


@dataclass(frozen=True)
class ModelEntry:
    """One row of a Models-tab table.

    ``name``: the path under its folder without suffix ("style/ink"), as prompts name it.
    ``family``: e.g. "SDXL", "SD1.x inpainting", "LoRA SD1.x"; ``base``: "SD1.x", "SD2.x", "SDXL";
    both "" when unknown or not read. ``short_hash``: cached only, else None. ``metadata``: the
    safetensors ``__metadata__``; ``training``: its ``TRAINING_KEYS``; ``trained_words``: top
    ``ss_tag_frequency`` tags. ``user_metadata``: the sidecar's A1111 fields as strings.
    ``blocked``: why the file cannot be loaded (broken, an impostor, a refused pickle), in words
    without its path; "" when it can.
    """

    kind: str
    name: str
    path: Path
    size_bytes: int
    mtime: float
    family: str = ""
    base: str = ""
    short_hash: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    training: Mapping[str, str] = field(default_factory=dict)
    trained_words: tuple[str, ...] = ()
    preview: Path | None = None
    user_metadata: Mapping[str, str] = field(default_factory=dict)
    has_details: bool = False
    blocked: str = ""

    @property
    def trigger_words(self) -> str:
        """What to add to a prompt: the user's "activation text", else the top training tags."""
        return self.user_metadata.get("activation text", "") or ", ".join(self.trained_words)


def _cross_attention_base(header: SafetensorsHeader, suffixes: tuple[str, ...]) -> str:
    """The base model from the input width of a cross-attention key projection (attn2 to_k)."""
    for key, entry in header.tensors.items():
        if "attn2" in key and "to_k" in key and key.endswith(suffixes):
            shape = entry["shape"]
            return _CONTEXT_BASES.get(shape[-1], "") if len(shape) == 2 else ""
    return ""


def _lora_base(header: SafetensorsHeader) -> str:
    version = header.metadata.get("ss_base_model_version", "")
    if version.startswith("flux1") or is_flux_lora(header.tensors):
        return "FLUX.1"
    base = _cross_attention_base(header, ("lora_down.weight", "lora_A.weight", "lora.down.weight"))
    if base:
        return base
    if any(k.startswith(("lora_te2_", "text_encoder_2.", "lora_unet_input_blocks")) for k in header.tensors):
        return "SDXL"  # a second text encoder, or kohya's LDM-named (SDXL) UNet modules
    return next((b for prefix, b in (("sdxl", "SDXL"), ("sd_v2", "SD2.x"), ("sd_v1", "SD1.x"))
                 if version.startswith(prefix)), "")


def _embedding_base(header: SafetensorsHeader) -> str:
    if "clip_g" in header.tensors:
        return "SDXL"
    widths = {entry["shape"][-1] for entry in header.tensors.values() if entry["shape"]}
    return _CONTEXT_BASES.get(widths.pop(), "") if len(widths) == 1 else ""


def _upscaler_family(header: SafetensorsHeader) -> str:
    """The architecture spandrel would pick, judged from shapes alone (meta tensors hold no data)."""
    import torch
    from spandrel import MAIN_REGISTRY

    state = {key: torch.empty(entry["shape"], device="meta") for key, entry in header.tensors.items()}
    for arch in MAIN_REGISTRY.architectures("detection"):
        try:
            if arch.detect(state):
                return str(arch.architecture.name)
        except Exception:  # a detector that reads tensor values cannot run on meta tensors: not a match
            continue
    return ""


def _family(kind: str, header: SafetensorsHeader) -> tuple[str, str]:
    """(family label, base model) of a safetensors file of ``kind``; "" where unknown."""
    if kind == "checkpoints":
        try:
            label = detect_family(lambda key: key in header.tensors, header.shape).label
        except UnknownFamilyError:
            return "", ""
        return label, label.split(" ")[0]
    if kind == "vae":  # SD1/SD2/SDXL VAEs share one layout; only the latent channels differ (SD3/Flux: 16)
        shape = header.shape("decoder.conv_in.weight") or header.shape("first_stage_model.decoder.conv_in.weight")
        return {4: "VAE SD/SDXL", 16: "VAE 16-channel"}.get(shape[1] if shape and len(shape) == 4 else 0, "VAE"), ""
    if kind == "upscalers":
        return _upscaler_family(header), ""
    base = {"lora": _lora_base, "embeddings": _embedding_base,
            "controlnet": lambda h: _cross_attention_base(h, ("to_k.weight",))}[kind](header)
    return f"{_FAMILY_PREFIX[kind]} {base}".strip(), base


def _trained_words(metadata: Mapping[str, str]) -> tuple[str, ...]:
    """The top tags of kohya's ``ss_tag_frequency`` ({dataset: {tag: count}}), summed over datasets."""
    try:
        datasets = json.loads(metadata.get("ss_tag_frequency", "{}"))
    except ValueError:
        return ()
    counts: Counter[str] = Counter()
    for tags in datasets.values() if isinstance(datasets, dict) else ():
        for tag, count in tags.items() if isinstance(tags, dict) else ():
            if tag.strip() and isinstance(count, int):
                counts[tag.strip()] += count
    return tuple(tag for tag, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:_TOP_TAGS])


def read_details(entry: ModelEntry) -> ModelEntry:
    """``entry`` with family, metadata, training info and trained words from its safetensors
    header alone; pickles, unreadable files and unknown layouts get empty details."""
    if entry.path.is_dir():  # a diffusers checkpoint folder: its JSON configs say what it is
        try:
            label = detect_diffusers_family(entry.path).label
        except UnknownFamilyError:
            return replace(entry, has_details=True)
        return replace(entry, family=label, base=label.split(" ")[0], has_details=True)
    if not entry.path.name.lower().endswith(SAFETENSORS_SUFFIXES):
        return replace(entry, has_details=True)
    try:
        header = read_safetensors_header(entry.path)
    except ModelFileError as error:
        return replace(entry, has_details=True, blocked=public_text(error.detail))
    family, base = _family(entry.kind, header)
    metadata = {str(k): str(v) for k, v in header.metadata.items()}
    return replace(entry, family=family, base=base, metadata=metadata, has_details=True,
                   training={key: metadata[key] for key in TRAINING_KEYS if key in metadata},
                   trained_words=_trained_words(metadata))


def sidecar_path(model_path: Path) -> Path:
    """The user-metadata sidecar of a model file or diffusers folder: ``<stem>.json``."""
    return model_path.with_name((model_path.name if model_path.is_dir() else model_path.stem) + ".json")


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_user_metadata(model_path: Path) -> dict[str, str]:
    """The A1111 user-metadata fields of the sidecar, as strings; {} without a readable sidecar."""
    data = _read_json_object(sidecar_path(model_path))
    return {key: str(data[key]) for key in USER_METADATA_FIELDS if data.get(key) is not None}


def save_user_metadata(entry_path: Path, fields: Mapping[str, str]) -> Path:
    """Write user-metadata ``fields`` into the model's sidecar, atomically (temp file + ``os.replace``).

    Other keys in the sidecar are kept. "preferred weight" is stored as a number, as A1111
    does; "" removes it. Returns the sidecar path.

    Raises:
        ModelInstallError: "path" (no such model), or the unknown or invalid field's name.
    """
    entry_path = Path(entry_path)
    if not entry_path.exists():
        raise ModelInstallError("path", f"{entry_path} does not exist")
    for key, value in fields.items():
        if key not in USER_METADATA_FIELDS:
            raise ModelInstallError(key, f"unknown user-metadata field; expected one of {USER_METADATA_FIELDS}")
        if not isinstance(value, str):
            raise ModelInstallError(key, "must be text")
    target = sidecar_path(entry_path)
    data = _read_json_object(target)
    data.update(fields)
    if "preferred weight" in fields:
        weight = data.pop("preferred weight").strip()
        try:
            if weight:
                data["preferred weight"] = float(weight)
        except ValueError:
            raise ModelInstallError("preferred weight", f"{weight!r} is not a number") from None
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")  # hidden, same folder
    try:
        with tmp.open("x", encoding="utf-8") as handle:
            json.dump(data, handle, indent=4, ensure_ascii=False)  # as A1111 writes it
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _scan(root: Path, suffixes: tuple[str, ...], diffusers_folders: bool) -> list[FoundFile]:
    """Model files (and diffusers folders) under ``root``, linked folders too; not hidden ones."""
    if not diffusers_folders:
        return walk_files(root, suffixes)
    return walk_files(root, suffixes, folder_marker="model_index.json", skip_folder_suffixes=(_CONFIG_DIR_SUFFIX,))


def _entry(kind: str, found: FoundFile, hashes: HashCache) -> ModelEntry:
    path, is_dir, siblings = found.path, found.is_folder, found.siblings
    stem = path.name if is_dir else path.stem
    stat = path.stat()
    return ModelEntry(
        kind=kind, name=found.relative if is_dir else Path(found.relative).with_suffix("").as_posix(), path=path,
        size_bytes=folder_size(path) if is_dir else stat.st_size,
        mtime=stat.st_mtime, short_hash=None if is_dir else hashes.cached_short_hash(path),
        preview=next((path.with_name(stem + s) for s in PREVIEW_SUFFIXES if stem + s in siblings), None),
        user_metadata=read_user_metadata(path) if stem + ".json" in siblings else {},
    )


def list_models(kind: str, folders: Sequence[Path], hash_cache: HashCache,
                read_headers: bool = True) -> list[ModelEntry]:
    """The models of ``kind`` under ``folders`` (subfolders too), sorted by name.

    Args:
        kind: a key of ``KINDS`` (else ModelInstallError on "kind").
        folders: where that kind lives (``DataPaths.lora``; ``DataPaths.upscalers`` is two folders).
        hash_cache: read for hashes already known; nothing is hashed.
        read_headers: read each safetensors header for family and metadata. A real LoRA's
            header (~150 kB of JSON) takes 2-3 ms (bench/model_catalog.py: 1,000 files ~3 s,
            ~0.1 s without), so big folders pass False and ``read_details`` rows as shown.
    """
    if kind not in KINDS:
        raise ModelInstallError("kind", f"unknown model kind {kind!r}; expected one of {', '.join(KINDS)}")
    entries = []
    for root in dict.fromkeys(Path(folder) for folder in folders):
        for found in _scan(root, KINDS[kind], diffusers_folders=kind == "checkpoints"):
            try:
                entry = _entry(kind, found, hash_cache)
            except OSError:  # deleted while we listed
                continue
            entries.append(read_details(entry) if read_headers else entry)
    return sorted(entries, key=lambda e: (e.name.lower(), e.name))


def delete_model(path: Path, folders: Sequence[Path]) -> list[Path]:
    """Delete a model file and its sidecars (``<stem>.json`` and previews); returns what was removed.

    Raises ModelInstallError on "path" for anything but a model file inside one of ``folders``
    (the file's parent is resolved first, so neither ``..`` nor a symlinked folder escapes).
    """
    absolute = Path(os.path.abspath(path))
    target = absolute.parent.resolve() / absolute.name
    if not any(target.is_relative_to(root) and target != root for root in (Path(f).resolve() for f in folders)):
        raise ModelInstallError("path", f"{path} is not inside a model folder; refusing to delete it")
    if not (target.is_file() or target.is_symlink()) or not target.name.lower().endswith(_ALL_SUFFIXES):
        raise ModelInstallError("path", f"{path} is not a model file")
    target.unlink()
    removed = [target]
    for sidecar in (target.with_name(target.stem + suffix) for suffix in (".json", *PREVIEW_SUFFIXES)):
        if sidecar.is_file():
            sidecar.unlink()
            removed.append(sidecar)
    return removed


@dataclass(frozen=True)
class HashProgress:
    """A snapshot of a ``BackgroundHasher``; ``current`` is the file name being hashed ("" when idle)."""

    done: int
    total: int
    current: str
    failed: tuple[Path, ...]
    is_running: bool
    is_cancelled: bool


class BackgroundHasher:
    """Computes the short hashes of ``paths`` through ``hash_cache`` on a daemon thread; the
    caller owns it and polls ``progress``. Cancelling stops between files (a file being hashed
    finishes first and lands in the cache)."""

    def __init__(self, hash_cache: HashCache, paths: Sequence[Path]) -> None:
        self._cache = hash_cache
        self._paths = list(dict.fromkeys(Path(p) for p in paths))
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._current = ""
        self._failed: list[Path] = []
        self._results: dict[Path, str] = {}
        self._thread = threading.Thread(target=self._run, name="model-hasher", daemon=True)

    def start(self) -> BackgroundHasher:
        """Start hashing (once); returns self."""
        self._thread.start()
        return self

    def _run(self) -> None:
        for path in self._paths:
            if self._cancel.is_set():
                break
            with self._lock:
                self._current = path.name
            try:
                digest = self._cache.short_hash(path)
            except OSError:  # vanished or unreadable: report it and go on with the rest
                with self._lock:
                    self._failed.append(path)
                continue
            with self._lock:
                self._results[path] = digest
        with self._lock:
            self._current = ""

    def cancel(self) -> None:
        """Ask the thread to stop after the current file; returns at once."""
        self._cancel.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True when it has finished (or was never started)."""
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> bool:
        """``cancel``, then ``join``; True when the thread has finished."""
        self.cancel()
        return self.join(timeout)

    @property
    def progress(self) -> HashProgress:
        with self._lock:
            done = len(self._results) + len(self._failed)
            return HashProgress(done, len(self._paths), self._current, tuple(self._failed),
                                self._thread.is_alive(), self._cancel.is_set())

    @property
    def results(self) -> dict[Path, str]:
        """The short hashes computed so far, by path."""
        with self._lock:
            return dict(self._results)
