"""The composition root's product: one ``AppContext`` built from the command-line flags and
passed down. There is no shared module and no mutable module-level state."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path

from modules.a1111_flags import CONTROLNET_DIRS, TEXT_ENCODER_DIRS, UPSCALER_DIRS, VAE_DIRS
from modules.exposure import extension_install_allowed
from modules.extensions.api import ScriptResources
from modules.extensions.loader import ScriptCatalog, discover_scripts
from modules.extensions.manager import read_disabled
from modules.models.controlnet import ControlNetLibrary
from modules.models.hashing import HashCache
from modules.models.manager import ModelManager, choose_placement
from modules.models.memory import MemoryPolicy
from modules.models.registry import CheckpointRegistry
from modules.models.upscalers import UpscalerLibrary
from modules.paths import BUILTIN_EXTENSIONS_DIR, BUILTIN_SCRIPTS_DIR, DEMO_MODEL_DIR, DataPaths
from modules.processing.control.control_preprocess import Preprocessors

__all__ = ["AppContext", "build_app_context", "load_scripts"]


@dataclass
class AppContext:
    """Process-wide services: where data lives, the checkpoints and the loaded models.

    ``extension_install_allowed`` says whether the Extensions tab may install extensions
    (off on an exposed server unless ``--enable-insecure-extension-access``; see
    ``modules.exposure``). ``server_folders_allowed`` says whether requests may name folders
    on the server (img2img's batch from a directory); the same rule applies, because a
    folder path typed into a public page would read and write the host's files.
    """

    paths: DataPaths
    registry: CheckpointRegistry
    models: ModelManager
    upscalers: UpscalerLibrary
    extension_install_allowed: bool = True
    server_folders_allowed: bool = True
    scripts: ScriptCatalog = field(default_factory=ScriptCatalog)
    disable_extensions: str = "none"
    controlnets: ControlNetLibrary | None = None
    preprocessors: Preprocessors | None = None

    def script_resources(self) -> ScriptResources:
        """What every script instance gets as ``Script.resources``."""
        return ScriptResources(self.controlnets, self.preprocessors, self.upscalers)


def _extra_dirs(args: argparse.Namespace, flag: str) -> list[Path]:
    """The folders a repeatable ``--lora-dir``-style flag adds (none when the command lacks it)."""
    return [Path(d).expanduser().resolve() for d in getattr(args, flag, None) or []]


def build_app_context(args: argparse.Namespace) -> AppContext:
    """Build the context from parsed flags (``--data-dir``, ``--ckpt-dir``, precision and memory
    flags, exposure flags). Commands without server flags get their defaults."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    paths = DataPaths(args.data_dir.resolve()) if getattr(args, "data_dir", None) else DataPaths()
    roots = [paths.checkpoints, *[Path(d).expanduser().resolve() for d in getattr(args, "ckpt_dir", [])]]
    # The shipped demo model is listed everywhere but is the default only on a fresh install.
    allow_pickle = getattr(args, "allow_pickle", False)
    registry = CheckpointRegistry(roots, HashCache(paths.cache / "hashes.json"), fallback_roots=[DEMO_MODEL_DIR],
                                  allow_pickle=allow_pickle)
    memory = MemoryPolicy.from_flags(getattr(args, "medvram", False), getattr(args, "lowvram", False))
    placement = choose_placement(getattr(args, "precision", "auto"), getattr(args, "no_half", False),
                                 getattr(args, "device", None), memory)
    models = ModelManager(registry, placement, allow_pickle=allow_pickle,
                          vae_roots=[paths.vae, *_extra_dirs(args, VAE_DIRS)],
                          lora_roots=[paths.lora, *_extra_dirs(args, "lora_dir")],
                          embedding_roots=[paths.embeddings, *_extra_dirs(args, "embeddings_dir")],
                          text_encoder_roots=[paths.text_encoder, *_extra_dirs(args, TEXT_ENCODER_DIRS)])
    install_allowed = extension_install_allowed(
        getattr(args, "listen", False), getattr(args, "share", False), getattr(args, "server_name", None),
        getattr(args, "enable_insecure_extension_access", False))
    disable = getattr(args, "disable_extensions", "none")
    # The extra folders come from A1111 flags (--vae-dir, --esrgan-models-path, --controlnet-dir, ...).
    upscalers = UpscalerLibrary([*paths.upscalers, *_extra_dirs(args, UPSCALER_DIRS)], allow_pickle,
                                str(placement.device))
    controlnets = ControlNetLibrary([paths.controlnet, *_extra_dirs(args, CONTROLNET_DIRS)], registry.hashes)
    preprocessors = Preprocessors(paths.annotators, allow_pickle, str(placement.device))
    context = AppContext(paths=paths, registry=registry, models=models, upscalers=upscalers,
                         extension_install_allowed=install_allowed, server_folders_allowed=install_allowed,
                         disable_extensions=disable, controlnets=controlnets, preprocessors=preprocessors)
    context.scripts = load_scripts(paths, disable, context.script_resources())
    return context


def load_scripts(paths: DataPaths, disable: str = "none", resources: ScriptResources | None = None) -> ScriptCatalog:
    """Import the shipped scripts and extensions and the data folder's, minus those switched off
    in the Extensions tab; every file that fails is logged (and listed in the catalog). Script
    instances get ``resources`` (the ControlNets, preprocessors and upscalers)."""
    scripts = discover_scripts(paths.scripts, [BUILTIN_EXTENSIONS_DIR, paths.extensions], disable,
                               read_disabled(paths.root), builtin_dir=BUILTIN_SCRIPTS_DIR)
    scripts.resources = resources or ScriptResources()
    for problem in scripts.errors:
        logging.getLogger(__name__).warning("script skipped: %s", problem)
    return scripts
