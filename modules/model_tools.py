"""Model management behind the Models and Checkpoint Merger tabs: merge checkpoints, list
every kind of model file, install and delete them, and report memory.

The tabs (and tests) call these methods with names as the UI shows them; paths are resolved
here, inside the data dir's model folders, so a request can never name a file elsewhere.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from modules.app import AppContext
from modules.models.catalog import (
    KINDS,
    BackgroundHasher,
    ModelEntry,
    delete_model,
    list_models,
    read_details,
    save_user_metadata,
)
from modules.models.files import PICKLE_REFUSED, PICKLE_SUFFIXES
from modules.models.install import (
    DEFAULT_DOWNLOAD_LIMITS,
    DownloadLimits,
    ModelInstallError,
    install_from_path,
    install_from_url,
)
from modules.models.memory import memory_usage
from modules.models.merge import MergeError, MergeRequest, default_output_name, merge_checkpoints
from modules.models.vae import find_vae_files

__all__ = ["MAX_INSTALL_BYTES", "MERGE_LOCKED", "SYNC_DETAILS_LIMIT", "ModelTools"]

Progress = Callable[[int, int], None]
MAX_INSTALL_BYTES = 16 * 2**30  # the largest SDXL/Flux checkpoints stay well under this
# Reading one safetensors header costs 2-3 ms (bench/model_catalog.py): up to this many are read
# while listing; more are read on a background thread and appear at the next refresh, so a
# folder of 1,000 files still lists in well under a second.
SYNC_DETAILS_LIMIT = 150
#: Why the Checkpoint Merger refuses on an exposed server (the tab shows it too).
MERGE_LOCKED = ("merging checkpoints is off on a server others can reach; "
                "start it with --enable-insecure-extension-access to allow it")


class ModelTools:
    """Merging, listing, installing and memory for one running studio."""

    def __init__(self, context: AppContext, download_limits: DownloadLimits = DEFAULT_DOWNLOAD_LIMITS) -> None:
        """``download_limits``: the deadline and minimum rate of installs from a URL."""
        self.context = context
        self.download_limits = download_limits
        self._merge_lock = threading.Lock()  # merges read and write gigabytes: one at a time
        self._hash_lock = threading.Lock()
        self._hasher: BackgroundHasher | None = None
        self._details: dict[tuple[Path, float], ModelEntry] = {}  # header facts by (file, mtime)
        self._details_lock = threading.Lock()

    # -- checkpoint merger ------------------------------------------------------------------

    def merge(self, fields: Mapping[str, Any], progress: Progress | None = None) -> str:
        """Merge checkpoints as the Checkpoint Merger tab says; returns the new checkpoint's title.

        ``fields``: ``primary_model``, ``secondary_model``, ``tertiary_model`` (checkpoint titles
        or names; "" for none), ``custom_name``, ``multiplier``, ``interp_method``,
        ``save_as_half``, ``config_source``, ``bake_in_vae`` (a VAE file name or "None"),
        ``discard_weights``. The result goes into the first checkpoint folder.

        Raises:
            MergeError: naming the field (a model that does not exist, a name already taken ...),
                or saying that merging is off on a server others can reach.
            ModelFileError: an input file that cannot be read.
        """
        # A merge writes gigabytes into the model folder: the same rule as installing and deleting.
        if not self.context.extension_install_allowed:
            raise MergeError("primary_model", MERGE_LOCKED)
        request = self._merge_request(fields)
        if request.output.exists():
            raise MergeError("custom_name", f"{request.output.name} already exists; choose another name")
        if not self._merge_lock.acquire(blocking=False):
            raise MergeError("primary_model", "another merge is running; wait for it to finish")
        try:
            merge_checkpoints(request, progress, self.context.registry.hashes.sha256)
        finally:
            self._merge_lock.release()
        registry = self.context.registry
        registry.refresh()
        return registry.title(registry.find(request.output.stem))  # written into the first checkpoint folder

    def _checkpoint_path(self, field: str, title: str) -> Path | None:
        if not title or title == "None":
            return None
        try:
            return self.context.registry.find(title).path
        except LookupError as error:
            raise MergeError(field, str(error)) from None

    def _merge_request(self, fields: Mapping[str, Any]) -> MergeRequest:
        primary = self._checkpoint_path("primary_model", str(fields.get("primary_model") or ""))
        if primary is None:
            raise MergeError("primary_model", "choose the primary model (A)")
        secondary = self._checkpoint_path("secondary_model", str(fields.get("secondary_model") or ""))
        tertiary = self._checkpoint_path("tertiary_model", str(fields.get("tertiary_model") or ""))
        method = str(fields.get("interp_method") or "Weighted sum")
        multiplier = fields.get("multiplier", 0.3)
        name = str(fields.get("custom_name") or "").strip()
        if any(char in name for char in "/\\") or name.startswith("."):
            raise MergeError("custom_name", "must be a plain file name, without folders")
        if not name:
            name = default_output_name(method, float(multiplier), primary, secondary, tertiary)
        if name.lower().endswith(".safetensors"):
            name = name[: -len(".safetensors")]
        vae_name = str(fields.get("bake_in_vae") or "None")
        vae = None
        if vae_name != "None":
            matches = [v.path for v in find_vae_files(self.context.models.vae_roots) if v.name == vae_name]
            if not matches:
                raise MergeError("bake_in_vae", f"no VAE {vae_name!r} in {self.context.paths.vae}")
            vae = matches[0]
        return MergeRequest(primary=primary, secondary=secondary, tertiary=tertiary,
                            output=self.context.paths.checkpoints / f"{name}.safetensors", multiplier=multiplier,
                            method=method, save_as_fp16=bool(fields.get("save_as_half", False)), bake_vae=vae,
                            discard_weights=str(fields.get("discard_weights") or ""),
                            allow_pickle=self.context.models.allow_pickle,
                            config_source=str(fields.get("config_source") or "A, B or C"))

    # -- memory -----------------------------------------------------------------------------

    def memory(self) -> dict[str, Any]:
        """RAM, VRAM and the loaded checkpoints (``memory_usage``)."""
        return memory_usage([(m.name, m.pipeline, m.denoising_module.device) for m in self.context.models.loaded])

    # -- the Models tab ---------------------------------------------------------------------

    def all_folders(self) -> list[Path]:
        """Every folder of every kind of model (where merges, installs and notes are written)."""
        return [folder for kind in KINDS for folder in self.folders(kind)]

    def folders(self, kind: str) -> list[Path]:
        """The folders a kind of model lives in ("checkpoints", "lora", "vae", "embeddings",
        "upscalers", "controlnet"); the first is where installs go.

        Raises:
            ModelInstallError: an unknown kind (field "kind").
        """
        paths = self.context.paths
        models = self.context.models
        table = {"checkpoints": list(self.context.registry.roots), "lora": list(models.loras.roots),
                 "vae": list(models.vae_roots), "embeddings": list(models.embeddings.roots),
                 "upscalers": list(paths.upscalers), "controlnet": [paths.controlnet]}
        if kind not in table:
            raise ModelInstallError("kind", f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
        return table[kind]

    def entries(self, kind: str) -> list[ModelEntry]:
        """The kind's files with their cheap facts (hashes shown are cached ones; nothing is
        hashed). Header facts (family, metadata, trigger words) come from a cache; missing ones
        are read now when few, else in the background (``SYNC_DETAILS_LIMIT``)."""
        folders = self.folders(kind)
        if kind == "checkpoints":  # the registry's list: the bundled demo model's folder too (with
            # --data-dir it lies outside ``folders``; never an install or delete target there)
            folders += [root for root in self.context.registry.fallback_roots
                        if not any(root.is_relative_to(folder.resolve()) for folder in folders)]
        listed = list_models(kind, folders, self.context.registry.hashes, read_headers=False)
        with self._details_lock:
            missing = [e for e in listed if (e.path, e.mtime) not in self._details]
        if len(missing) <= SYNC_DETAILS_LIMIT:
            self._read_details(missing)
        else:
            threading.Thread(target=self._read_details, args=(missing,), name="model-details", daemon=True).start()
        with self._details_lock:
            merged = [self._merged(e, self._details.get((e.path, e.mtime))) for e in listed]
        return [self._with_status(kind, entry) for entry in merged]

    def _with_status(self, kind: str, entry: ModelEntry) -> ModelEntry:
        """The entry with why it is blocked: the registry's verdict for checkpoints (so the
        Models tab, ``/sd-models`` and ``/health`` agree), the pickle policy for the others."""
        if kind == "checkpoints":
            registry = self.context.registry
            resolved = entry.path.resolve()
            info = next((i for i in registry.items if i.path.resolve() == resolved), None)
            reason = registry.blocked(info) if info is not None else None
            return dataclasses.replace(entry, blocked=reason or entry.blocked)
        if entry.path.suffix.lower() in PICKLE_SUFFIXES and not self.context.models.allow_pickle:
            return dataclasses.replace(entry, blocked=PICKLE_REFUSED)
        return entry

    def _read_details(self, entries: list[ModelEntry]) -> None:
        for entry in entries:
            detailed = read_details(entry)
            with self._details_lock:
                self._details[(entry.path, entry.mtime)] = detailed

    @staticmethod
    def _merged(listed: ModelEntry, detailed: ModelEntry | None) -> ModelEntry:
        """The fresh listing (hash, notes, preview) with the cached header facts."""
        if detailed is None:
            return listed
        return dataclasses.replace(detailed, short_hash=listed.short_hash, user_metadata=listed.user_metadata,
                                   preview=listed.preview, size_bytes=listed.size_bytes, blocked=detailed.blocked)

    def entry(self, kind: str, name: str) -> ModelEntry:
        """One file of the kind by its listed name. Raises ModelInstallError("name")."""
        for entry in self.entries(kind):
            if entry.name == name:
                return entry
        raise ModelInstallError("name", f"no {kind} model named {name!r}")

    def details(self, kind: str, name: str) -> ModelEntry:
        """``entry`` with its header facts read, if the listing had not read them yet."""
        entry = self.entry(kind, name)
        return entry if entry.has_details else self._merged(entry, read_details(entry))

    def save_notes(self, kind: str, name: str, fields: Mapping[str, str]) -> ModelEntry:
        """Write the model's user metadata sidecar (description, activation text, …)."""
        save_user_metadata(self.entry(kind, name).path, fields)
        return self.entry(kind, name)

    def delete(self, kind: str, name: str) -> Path:
        """Delete a model file and its sidecars; returns the deleted path."""
        self._require_file_access()
        entry = self.entry(kind, name)
        delete_model(entry.path, self.folders(kind))
        self._after_change(kind)
        return entry.path

    def install_url(self, kind: str, url: str, sha256: str = "", filename: str = "",
                    progress: Callable[[int, int | None], None] | None = None) -> Path:
        """Download a model into the kind's folder (see ``install_from_url``)."""
        self._require_file_access()
        path = install_from_url(url, self.folders(kind)[0], expected_sha256=sha256.strip() or None,
                                max_bytes=MAX_INSTALL_BYTES, progress=progress, filename=filename.strip() or None,
                                limits=self.download_limits)
        self._after_change(kind)
        return path

    def install_path(self, kind: str, source: str) -> Path:
        """Copy a model file from this machine into the kind's folder."""
        self._require_file_access()
        path = install_from_path(Path(source.strip()).expanduser(), self.folders(kind)[0])
        self._after_change(kind)
        return path

    def start_hashing(self, kind: str) -> BackgroundHasher:
        """Hash the kind's files on a background thread (the table shows them as they finish)."""
        with self._hash_lock:
            if self._hasher is None or not self._hasher.progress.is_running:
                paths = [entry.path for entry in self.entries(kind) if entry.path.is_file()]
                self._hasher = BackgroundHasher(self.context.registry.hashes, paths).start()
            return self._hasher

    @property
    def hasher(self) -> BackgroundHasher | None:
        """The last hashing run started (running or finished), or None."""
        return self._hasher

    def _require_file_access(self) -> None:
        """Installing and deleting write the server's disk: only where extensions may be installed."""
        if not self.context.extension_install_allowed:
            raise ModelInstallError("url", "installing and deleting models is off on a server others can reach; "
                                           "start it with --enable-insecure-extension-access to allow it")

    def _after_change(self, kind: str) -> None:
        if kind == "checkpoints":
            self.context.registry.refresh()
        elif kind == "upscalers":
            self.context.upscalers.refresh()
