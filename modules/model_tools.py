"""Model management behind the Models and Checkpoint Merger tabs: merge checkpoints, list
every kind of model file, install and delete them, and report memory.

The tabs (and tests) call these methods with names as the UI shows them; paths are resolved
here, inside the data dir's model folders, so a request can never name a file elsewhere.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from modules.app import AppContext
from modules.models.memory import memory_usage
from modules.models.merge import MergeError, MergeRequest, default_output_name, merge_checkpoints
from modules.models.vae import find_vae_files

__all__ = ["ModelTools"]

Progress = Callable[[int, int], None]


class ModelTools:
    """Merging, listing, installing and memory for one running studio."""

    def __init__(self, context: AppContext) -> None:
        self.context = context
        self._merge_lock = threading.Lock()  # merges read and write gigabytes: one at a time

    # -- checkpoint merger ------------------------------------------------------------------

    def merge(self, fields: Mapping[str, Any], progress: Progress | None = None) -> str:
        """Merge checkpoints as the Checkpoint Merger tab says; returns the new checkpoint's title.

        ``fields``: ``primary_model``, ``secondary_model``, ``tertiary_model`` (checkpoint titles
        or names; "" for none), ``custom_name``, ``multiplier``, ``interp_method``,
        ``save_as_half``, ``config_source``, ``bake_in_vae`` (a VAE file name or "None"),
        ``discard_weights``. The result goes into the first checkpoint folder.

        Raises:
            MergeError: naming the field (a model that does not exist, a name already taken ...).
            ModelFileError: an input file that cannot be read.
        """
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
        return registry.title(registry.find(str(request.output)))

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
        return memory_usage([(m.name, m.pipeline) for m in self.context.models.loaded])
