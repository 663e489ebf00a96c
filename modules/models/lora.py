"""LoRA files: find them by name, hash them as A1111 does, and apply them for one job.

A prompt names a LoRA as ``<lora:name:weight>``; ``name`` is looked up in the LoRA folders
(``models/Lora`` and its subfolders) by file stem or by its path under the folder without
suffix ("style/ink"). Names are never used as paths, so a prompt cannot reach other files.

A LoRA goes onto the pipeline's components by their names: the denoiser (``unet`` for SD,
``transformer`` for FLUX.1) takes the ``<lora:name:te:unet>`` UNet weight, the text encoders
(``text_encoder``, ``text_encoder_2``) the text-encoder weight. SD files in kohya/A1111 layout
(``lora_unet_…``/``lora_te_…`` keys with ``lora_down``, ``lora_up`` and ``alpha``) and diffusers
layout are converted by diffusers; FLUX.1 files in kohya, BFL/ComfyUI and diffusers layouts are
renamed by ``modules.families.flux.lora_keys`` first (diffusers' own converter misses some). All
are injected by diffusers' peft integration. They stay unfused: the base weights are never
written, and unloading puts the original modules back, so an image made after a LoRA job is
bit-identical to one made before it. Reference: Hu et al. 2021, "LoRA: Low-Rank Adaptation of
Large Language Models" (W + scale * up @ down, scale = weight * alpha / rank).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from modules.families.flux.lora_keys import flux_lora_to_peft, is_flux_lora, transformer_config_of
from modules.models.files import PICKLE_SUFFIXES, SAFETENSORS_SUFFIXES, ModelFileError, load_state_dict
from modules.models.hashing import HashCache
from modules.models.walk import walk_files

__all__ = ["LORA_HASH_LENGTH", "LoraFile", "LoraLibrary", "LoraUse", "loras_applied"]

logger = logging.getLogger(__name__)

#: A1111's "Lora hashes" show the first 12 hex digits (the Model hash shows 10).
LORA_HASH_LENGTH = 12
# The components diffusers' LoRA loader can change, as named in ``set_adapters`` weights: these
# take a use's text-encoder weight, the denoiser (``unet`` or ``transformer``) its UNet weight.
_TEXT_ENCODERS = ("text_encoder", "text_encoder_2")
_FLOAT8 = (torch.float8_e4m3fn, torch.float8_e5m2)


@dataclass(frozen=True)
class LoraFile:
    """A LoRA on disk: ``name`` is its file stem, ``relative`` its path under its folder
    without suffix (equal to ``name`` outside subfolders)."""

    name: str
    relative: str
    path: Path


@dataclass(frozen=True)
class LoraUse:
    """One ``<lora:…>`` of a prompt, resolved: the file and its text-encoder and UNet weights
    (``unet_weight``, A1111's name, weighs whichever denoiser the model has: a FLUX.1 transformer too)."""

    file: LoraFile
    te_weight: float = 1.0
    unet_weight: float = 1.0


class LoraLibrary:
    """The LoRA files under ``roots``; ``refresh()`` rescans (A1111 "Refresh" button)."""

    def __init__(self, roots: Sequence[Path], hashes: HashCache, allow_pickle: bool = False) -> None:
        self.roots = [Path(r) for r in roots]
        self.hashes = hashes
        self.allow_pickle = allow_pickle
        self._files: list[LoraFile] = []
        self.refresh()

    def refresh(self) -> list[LoraFile]:
        found = []
        for root in self.roots:
            for hit in walk_files(root, SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES):
                # Named by the path the user sees under the folder (a linked folder's own name).
                found.append(LoraFile(hit.path.stem, Path(hit.relative).with_suffix("").as_posix(), hit.path))
        self._files = found
        return list(found)

    @property
    def files(self) -> list[LoraFile]:
        return list(self._files)

    def find(self, name: str) -> LoraFile | None:
        """The file a prompt's ``<lora:name:…>`` means: by path under the folder, else by stem.

        A name not in the last scan triggers one rescan, so a file just dropped into the
        folder works without pressing refresh.
        """
        found = self._lookup(name)
        if found is None:
            self.refresh()
            found = self._lookup(name)
        return found

    def _lookup(self, name: str) -> LoraFile | None:
        for lora in self._files:
            if name == lora.relative:
                return lora
        return next((lora for lora in self._files if name == lora.name), None)

    def short_hash(self, lora: LoraFile) -> str:
        """A1111's "Lora hashes" entry: the addnet hash for safetensors, else the file's SHA-256."""
        data_only = lora.path.suffix.lower() in SAFETENSORS_SUFFIXES
        return self.hashes.sha256(lora.path, data_only=data_only)[:LORA_HASH_LENGTH]

    def state_dict(self, lora: LoraFile) -> dict[str, Any]:
        """The file's tensors (pickles only with ``allow_pickle``). Raises ModelFileError."""
        return load_state_dict(lora.path, allow_pickle=self.allow_pickle)


@dataclass
class AppliedLoras:
    """What ``loras_applied`` did: the LoRAs in force and why others were left out."""

    applied: list[LoraUse] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _adapter_components(pipeline: Any, adapter: str) -> list[str]:
    """The pipeline's components (``unet``/``transformer``, ``text_encoder``…) ``adapter`` changes."""
    return [part for part, adapters in pipeline.get_list_adapters().items() if adapter in adapters]


def _component_weights(pipeline: Any, adapter: str, use: LoraUse) -> dict[str, float]:
    """``set_adapters`` weights of one adapter, for the components it actually changes: the text
    encoders take the use's text-encoder weight, the denoiser (UNet or transformer) its UNet weight."""
    return {part: use.te_weight if part in _TEXT_ENCODERS else use.unet_weight
            for part in _adapter_components(pipeline, adapter)}


def _make_lora_layers_computable(pipeline: Any, adapter: str) -> None:
    """peft makes a LoRA's layers in the dtype of the layer they wrap. Over a layer stored in fp8
    (FLUX fp8 files; it computes upcast by diffusers' layerwise casting) that is fp8, which torch
    cannot multiply, so those LoRA layers move to the component's compute dtype: the dtype of its
    parameters that are not fp8. They are dropped with the adapter, so nothing needs undoing."""
    for part in _adapter_components(pipeline, adapter):
        model = getattr(pipeline, part)
        compute = next((param.dtype for param in model.parameters()
                        if param.is_floating_point() and param.dtype not in _FLOAT8), None)
        if compute is None:
            continue
        for name, module in model.named_modules():
            if name.rsplit(".", 1)[-1] in ("lora_A", "lora_B") and any(
                    param.dtype in _FLOAT8 for param in module.parameters()):
                module.to(compute)


class _WrongFamilyError(ValueError):
    """A LoRA for another model family than the loaded one (FLUX.1 on SD, or SD on FLUX.1)."""


def _linear_names(model: Any) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]


def _state_for(pipeline: Any, state: dict[str, Any]) -> dict[str, Any]:
    """``state`` in the names the pipeline's LoRA loader reads.

    FLUX.1 pipelines get kohya and BFL/ComfyUI names renamed to diffusers' (``flux_lora_to_peft``);
    files it cannot place at all (XLabs', ai-toolkit's) go to diffusers' own converters as they are.

    Raises:
        _WrongFamilyError: a FLUX.1 LoRA on another model, or one naming no FLUX.1 layer on FLUX.1.
        ValueError: a FLUX.1 LoRA for another FLUX width, or with half a pair.
    """
    config = transformer_config_of(getattr(pipeline, "transformer", None))
    if config is None:
        if is_flux_lora(state):
            raise _WrongFamilyError("a LoRA for FLUX.1; the loaded model is not FLUX.1")
        return state
    if not is_flux_lora(state):
        raise _WrongFamilyError("names no FLUX.1 layer (a LoRA for SD1.x/SDXL?); the loaded model is FLUX.1")
    encoder = getattr(pipeline, "text_encoder", None)
    conversion = flux_lora_to_peft(state, config, _linear_names(encoder) if encoder is not None else ())
    if conversion.unused:
        logger.warning("FLUX LoRA: %d tensors fit no layer this pipeline loads LoRAs into (T5, DoRA "
                       "scales, norm or bias differences) and are left out, e.g. %s",
                       len(conversion.unused), conversion.unused[0])
    return conversion.state if conversion.converted else state


@contextlib.contextmanager
def _load_report_silenced() -> Iterator[None]:
    """transformers logs a "LOAD REPORT" warning listing every base weight of a text encoder as
    missing when only LoRA weights are loaded into it; it is noise here, so it is held back."""
    report_logger = logging.getLogger("transformers.integrations.peft")
    level = report_logger.level
    report_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        report_logger.setLevel(level)


def _load_adapter(pipeline: Any, library: LoraLibrary, use: LoraUse, adapter: str) -> str | None:
    """Inject one LoRA as peft adapter ``adapter``; returns why it failed, or None."""
    try:
        state = _state_for(pipeline, library.state_dict(use.file))
        with _load_report_silenced():
            pipeline.load_lora_weights(state, adapter_name=adapter)
    except ModelFileError as error:
        return f"{use.file.name}: {error.detail}"
    except _WrongFamilyError as error:
        return f"{use.file.name}: {error}"
    except (ValueError, KeyError, RuntimeError, TypeError, IndexError, AssertionError) as error:
        # diffusers raises these (its converters assert) for files that are not LoRAs, or LoRAs of
        # another model family.
        if adapter in {a for adapters in pipeline.get_list_adapters().values() for a in adapters}:
            pipeline.delete_adapters(adapter)
        return f"{use.file.name}: not a LoRA this model can use ({type(error).__name__}: {error})"
    if not _adapter_components(pipeline, adapter):
        # diffusers skips names it finds no layer for with only a log line: nothing was applied.
        return f"{use.file.name}: not a LoRA this model can use (it names none of its layers)"
    _make_lora_layers_computable(pipeline, adapter)
    return None


@contextlib.contextmanager
def loras_applied(pipeline: Any, library: LoraLibrary, uses: Sequence[LoraUse]) -> Iterator[AppliedLoras]:
    """Apply ``uses`` to ``pipeline`` for the ``with`` block, then remove every trace of them.

    A LoRA that cannot be loaded is reported in ``failures`` and the others still apply.
    The pipeline is shared, so the caller must hold it alone for the block (the job queue
    runs one job at a time).
    """
    outcome = AppliedLoras()
    names: list[str] = []
    weights: list[dict[str, float]] = []
    try:
        for use in uses:
            adapter = f"job_lora_{len(names)}"
            failure = _load_adapter(pipeline, library, use, adapter)
            if failure is not None:
                outcome.failures.append(failure)
                logger.warning("LoRA not applied: %s", failure)
                continue
            names.append(adapter)
            weights.append(_component_weights(pipeline, adapter, use))
            outcome.applied.append(use)
        if names:
            pipeline.set_adapters(names, adapter_weights=weights)
        yield outcome
    finally:
        if uses:
            # Replaces each peft layer (also those left by a failed load) by the original module
            # it wraps: the base weights were never changed.
            pipeline.unload_lora_weights()
