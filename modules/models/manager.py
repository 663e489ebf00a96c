"""The model manager: the single owner of loaded pipelines.

It keeps the last N checkpoints in memory (A1111 ``sd_checkpoints_limit``, default 1), picks
device and precision once, and serialises loads so two requests never load the same model
twice.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from modules.families.base import PartFolders
from modules.models.embeddings import EmbeddingLibrary
from modules.models.files import PICKLE_REFUSED, PICKLE_SUFFIXES, SAFETENSORS_SUFFIXES, ModelFileError
from modules.models.loader import LoadedModel, load_checkpoint
from modules.models.lora import LoraLibrary
from modules.models.memory import MemoryPolicy
from modules.models.registry import CheckpointInfo, CheckpointRegistry
from modules.models.vae import AUTOMATIC, BUILTIN, load_vae, resolve_vae_choice
from modules.models.walk import walk_files

__all__ = ["ModelManager", "Placement", "choose_placement"]

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


@dataclass(frozen=True)
class Placement:
    """Where models run, in which precision, and where their weights wait between uses.

    ``device`` is the execution device; with an offload ``memory`` policy the weights wait in
    CPU memory and visit it while they run.
    """

    device: torch.device
    dtype: torch.dtype
    memory: MemoryPolicy = MemoryPolicy.FULL


def choose_placement(precision: str = "auto", no_half: bool = False, device: str | None = None,
                     memory: MemoryPolicy = MemoryPolicy.FULL) -> Placement:
    """Device, dtype and memory policy for the given flags: fp16 on a GPU, fp32 on the CPU by default.

    Args:
        precision: "auto", "fp32", "fp16" or "bf16" (``--precision``).
        no_half: force fp32 (``--no-half``).
        device: "cpu", "cuda", "cuda:1", or None for the best available.
        memory: the ``--medvram``/``--lowvram`` policy; on the CPU it is logged and dropped
            (the weights are in CPU memory already).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    chosen = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if memory is not MemoryPolicy.FULL and chosen.type == "cpu":
        logger.warning("%s has no effect when running on the CPU", memory.flag)
        memory = MemoryPolicy.FULL
    if no_half or precision == "fp32":
        dtype = torch.float32
    elif precision == "bf16":
        dtype = torch.bfloat16
    elif precision == "fp16" or chosen.type == "cuda":
        dtype = torch.float16
    else:
        dtype = torch.float32
    return Placement(chosen, dtype, memory)


class ModelManager:
    """Loads checkpoints on demand and keeps the most recently used ``keep_loaded`` of them."""

    def __init__(
        self,
        registry: CheckpointRegistry,
        placement: Placement,
        keep_loaded: int = 1,
        allow_pickle: bool = False,
        vae_roots: Sequence[Path] = (),
        lora_roots: Sequence[Path] = (),
        embedding_roots: Sequence[Path] = (),
        text_encoder_roots: Sequence[Path] = (),
    ) -> None:
        self.registry = registry
        self.vae_roots = [Path(r) for r in vae_roots]
        self.text_encoder_roots = [Path(r) for r in text_encoder_roots]
        self.loras = LoraLibrary(lora_roots, registry.hashes, allow_pickle)
        self.embeddings = EmbeddingLibrary(embedding_roots, registry.hashes, allow_pickle)
        self.placement = placement
        self.keep_loaded = max(1, keep_loaded)
        # A1111 ``sd_checkpoints_keep_in_cpu``: the loaded models not in use wait in RAM, so
        # only the active one takes GPU memory (no effect on a CPU device or with offload).
        self.keep_in_cpu = True
        self.allow_pickle = allow_pickle
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._loaded_names: tuple[str, ...] = ()
        self._lock = threading.RLock()

    def resolve(self, query: str | CheckpointInfo | None) -> CheckpointInfo:
        """The checkpoint a request names: by name/title/hash (a ``CheckpointInfo`` the owner's
        CLI found by path as it is), else the current one, else the registry's default."""
        if isinstance(query, CheckpointInfo):
            return query
        if query:
            return self.registry.find(query)
        with self._lock:
            if self._loaded:
                return next(reversed(self._loaded.values())).info
        return self.registry.default()

    def get(self, query: str | CheckpointInfo | None = None, vae: str | None = None,
            modules: Sequence[str] = ()) -> LoadedModel:
        """The loaded model for ``query`` (see ``resolve``), loading it if needed, with the VAE
        ``vae`` ("Automatic" when None, "None" for the checkpoint's own, or a file name) in place.
        ``modules``: Forge's ``forge_additional_modules``, the text encoder and VAE files a model
        whose family takes them from their folders runs with (FLUX.1); other models ignore them.
        With no ``query``, a default that fails to load is blocked and the next one is tried.

        Raises:
            ModelNotFoundError: no such checkpoint or VAE. ModelFileError: a broken or refused file.
            ModelPartError: a part file is missing, ambiguous or unusable (nothing is blocked).
        """
        info = self.resolve(query)
        parts = self._part_folders(info, modules, vae)
        key = str(info.path) if parts is None else f"{info.path}|{'|'.join(parts.chosen)}"
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
            else:
                self._refuse_known_failures(info)  # before unloading what works
                while len(self._loaded) >= self.keep_loaded:
                    self._unload(next(iter(self._loaded)))
                short_hash = self.registry.short_hash(info)
                placement = self.placement
                try:
                    self._loaded[key] = load_checkpoint(info, placement.device, placement.dtype, short_hash,
                                                        self.allow_pickle, placement.memory, parts)
                except ModelFileError as error:  # blocked from now on, so it is never the default again
                    self.registry.record_load_failure(info, error.detail)
                    if query is None or isinstance(query, str) and not query:
                        logger.warning("default checkpoint %s not loaded (%s); trying the next", info.name, error)
                        return self.get(None, vae, modules)  # each failure blocks one more file: this ends
                    raise
                self._loaded_names = tuple(m.name for m in self._loaded.values())
            model = self._loaded[key]
            model.loras, model.embeddings = self.loras, self.embeddings
            self._place_models(key)
            if parts is None:  # a family with part files has its VAE among them
                self._use_vae(model, vae)
            return model

    def _part_folders(self, info: CheckpointInfo, modules: Sequence[str], vae: str | None) -> PartFolders | None:
        """Where the parts of ``info``'s model are, when its family loads them from files of
        their own (``FamilyCode``); None for SD's checkpoints, which carry theirs. With no
        ``modules`` chosen, a ``vae`` naming a file (A1111's ``sd_vae``, which A1111 clients set)
        chooses the VAE part."""
        if info.family is None or info.family.code is None:
            return None
        chosen = tuple(dict.fromkeys(name.strip() for name in modules if name.strip()))
        if not chosen and vae and vae.strip() not in (AUTOMATIC, BUILTIN):
            chosen = (vae.strip(),)
        return PartFolders(tuple(self.text_encoder_roots), tuple(self.vae_roots), chosen)

    def _place_models(self, active_key: str) -> None:
        """The active model on the device; with ``keep_in_cpu`` the others in RAM."""
        device = self.placement.device
        if device.type == "cpu":
            return
        for key, model in self._loaded.items():
            if model.offload is not None:
                continue  # offload hooks decide where its weights are
            target = device if key == active_key or not self.keep_in_cpu else torch.device("cpu")
            if model.denoising_module.device != target:
                model.pipeline.to(target)
                model.builtin_vae.to(target)

    def reload_current(self) -> LoadedModel | None:
        """Unload every checkpoint and load the last one used again (A1111 "reload-checkpoint"),
        e.g. after the file changed on disk; None when nothing was loaded."""
        with self._lock:
            current = next(reversed(self._loaded.values()), None)
            if current is None:
                return None
            info, vae = current.info, current.vae_file
            self.unload_all()
            self.registry.refresh()
            return self.get(info, vae.name if vae is not None else BUILTIN)

    def _refuse_known_failures(self, info: CheckpointInfo) -> None:
        if info.path.suffix.lower() in PICKLE_SUFFIXES and not self.allow_pickle:
            raise ModelFileError(info.path, "pickle_refused", PICKLE_REFUSED)
        if info.error is not None:
            raise ModelFileError(info.path, "unsupported", info.error)

    def _use_vae(self, model: LoadedModel, choice: str | None) -> None:
        """Put the chosen VAE into the model's pipeline (the checkpoint's own one when None)."""
        wanted = resolve_vae_choice(choice, model.info, self.vae_roots)
        if wanted == model.vae_file:
            return
        if wanted is None:
            model.pipeline.vae, model.vae_file, model.vae_hash = model.builtin_vae, None, None
        else:
            # With offload the VAE's weights wait in CPU memory like the rest of the model's.
            device = self.placement.device if model.offload is None else torch.device("cpu")
            vae = load_vae(wanted, model.family, model.info.config_dir, self.placement.dtype, device)
            model.pipeline.vae, model.vae_file = vae, wanted
            model.vae_hash = self.registry.hashes.short_hash(wanted.path)
        if model.offload is not None:
            model.offload.attach("vae", model.pipeline.vae)

    def part_file_names(self) -> list[str]:
        """The files a model with part files may be given (``get(modules=...)``): those in the
        text encoder and VAE folders, by their names under the folder, text encoders first."""
        names = [found.relative for root in (*self.text_encoder_roots, *self.vae_roots)
                 for found in walk_files(root, SAFETENSORS_SUFFIXES)]
        return list(dict.fromkeys(names))

    @property
    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._loaded.values())

    @property
    def loaded_names(self) -> tuple[str, ...]:
        """Names of the loaded models, read without the lock (a load may hold it for seconds);
        a snapshot replaced whole on every load and unload."""
        return self._loaded_names

    def unload_all(self) -> None:
        with self._lock:
            for key in list(self._loaded):
                self._unload(key)

    def _unload(self, key: str) -> None:
        model = self._loaded.pop(key)
        self._loaded_names = tuple(m.name for m in self._loaded.values())
        logger.info("unloading %s", model.info.path)
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
