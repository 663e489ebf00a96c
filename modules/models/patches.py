"""Per-job model patches: what a script may change about the UNet for one job, and the
weight-sharing clone the change is made on, so the shared model never sees it.

The idea is ComfyUI's clone-and-patch (a patch goes on a cheap copy of the model handle,
never on the model or a library class); the code is ours. A script fills a ``ModelPatches``
before the job (``Script.patch_model``):

* ``replace_attention(make, where)``: a new attention processor for every attention module
  ``where(name, module)`` selects (names as ``unet.named_modules()`` gives them, e.g.
  ``"mid_block.attentions.0.transformer_blocks.0.attn1"``); ``make(name, module, original)``
  returns it and may keep ``original``, the processor it replaces.
* ``add_forward_pre_hook(name, hook)`` / ``add_forward_hook(name, hook)``: a block's input
  (``hook(module, args, kwargs)`` returns None or new ``(args, kwargs)``) or output
  (``hook(module, args, kwargs, output)`` returns None or a new output), torch's own hooks
  registered on the clone's submodule ``name``.
* ``enable_freeu(s1, s2, b1, b2)``: FreeU's factors (Si et al. 2023), set through diffusers'
  public ``UNet2DConditionModel.enable_freeu`` on the clone.
* ``add_model_wrapper(wrapper)``: ``wrapper(call, run)`` receives each UNet call of the job
  (a ``ModelCall``: the batched input, how many batch copies it holds, whether the first is
  the unconditional one, the guidance scale) and ``run``, which runs the rest of the chain
  (``run(call)`` returns the UNet's (N, 4, h, w) output); it returns that output, changed or
  not. Wrappers nest in registration order: the first registered is the outermost.
* ``infotext``: keys for every image's infotext, recorded only when the patches applied.

``patches.family`` is the model family id and ``patches.model`` the shared UNet, to read names
and config from. Each patch is checked against it when added, so one that does not fit the
model raises ``ModelPatchError`` in the script that added it, which is then disabled for the
job (``HookDispatcher.model_patches``) with none of its patches used.

``patched_unet(unet, patches)`` is the job's view: with no patches it yields the shared UNet
itself (nothing is copied); otherwise it builds ``weight_sharing_clone(unet)`` (a deep copy of
the module tree in which every parameter and buffer is the shared object itself: no weight
is copied), applies the patches to the clone and yields a ``PatchedUNet`` that the loop calls
through ``run_unet``. The clone is dropped when the job ends; nothing is undone on the shared
model because nothing was done to it.

A patch must not change parameters or buffers in place (they are the shared model's).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["ModelCall", "ModelFunction", "ModelPatchError", "ModelPatches", "ModelWrapper", "PatchedUNet",
           "attention_modules", "patched_unet", "run_unet", "weight_sharing_clone"]


class ModelPatchError(ValueError):
    """A patch names a module the model does not have, or selects no attention module."""


@dataclass(frozen=True)
class ModelCall:
    """One batched UNet call of the loop, as model wrappers see it.

    Attributes:
        sample: (N, C, h, w) scaled latents, N = ``copies`` x batch size; with CFG the first
            batch copy is the unconditional one, then one copy per (AND) positive prompt.
        timestep: the scheduler timestep (0-d tensor).
        encoder_hidden_states: (N, T, D) text embeddings, in the order of ``sample``.
        added_cond_kwargs: SDXL's ``text_embeds`` (N, 1280) / ``time_ids`` (N, 6), or None.
        copies: how many batch copies ``sample`` holds.
        uses_cfg: whether the first copy is the unconditional one.
        guidance_scale: the CFG scale the copies' outputs will be combined with.
        extra: further UNet keyword arguments for the N rows (ControlNet residuals).
    """

    sample: torch.Tensor
    timestep: torch.Tensor
    encoder_hidden_states: torch.Tensor
    added_cond_kwargs: Mapping[str, torch.Tensor] | None
    copies: int
    uses_cfg: bool
    guidance_scale: float
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        """Rows per copy (the images of the batch)."""
        return self.sample.shape[0] // self.copies

    def copy_rows(self, first: int, count: int = 1) -> ModelCall:
        """The call for ``count`` batch copies from copy ``first`` on (e.g. ``copy_rows(1)``: the
        first positive prompt with CFG); every per-row input is sliced alike."""
        start, stop = first * self.batch_size, (first + count) * self.batch_size

        def rows(value: Any) -> Any:
            if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == self.sample.shape[0]:
                return value[start:stop]
            if isinstance(value, list | tuple):
                return type(value)(rows(v) for v in value)
            if isinstance(value, Mapping):
                return {k: rows(v) for k, v in value.items()}
            return value

        added = None if self.added_cond_kwargs is None else rows(self.added_cond_kwargs)
        return dataclasses.replace(self, sample=rows(self.sample), encoder_hidden_states=rows(
            self.encoder_hidden_states), added_cond_kwargs=added, copies=count,
            uses_cfg=self.uses_cfg and first == 0, extra=rows(dict(self.extra)))


#: Runs the model (or the rest of the wrapper chain) on a call: (N, 4, h, w) output.
ModelFunction = Callable[[ModelCall], torch.Tensor]
#: ``wrapper(call, run)``: the (N, 4, h, w) output for ``call``; ``run`` does the rest.
ModelWrapper = Callable[[ModelCall, ModelFunction], torch.Tensor]
#: ``make(name, attention_module, original_processor)``: the processor to use instead.
ProcessorFactory = Callable[[str, Any, Any], Any]


@dataclass(frozen=True)
class _AttentionPatch:
    make: ProcessorFactory
    where: Callable[[str, Any], bool]


class ModelPatches:
    """The patches of one job, filled by its scripts before it runs (see the module docstring).

    ``family`` is the id of the job's model family ("sd15", "sd2", "sdxl", ...), for patches
    whose settings depend on it. Given ``model`` (the shared UNet, only read), each patch is
    checked against it when it is added, so a script's patch that does not fit the model
    fails in that script's ``patch_model``.
    """

    def __init__(self, family: str = "", model: torch.nn.Module | None = None) -> None:
        self.family = family
        self._model = model  # the shared UNet, read only to check names when a patch is added
        self._attention: list[_AttentionPatch] = []
        self._pre_hooks: list[tuple[str, Callable[..., Any]]] = []
        self._hooks: list[tuple[str, Callable[..., Any]]] = []
        self._freeu: tuple[float, float, float, float] | None = None
        self._wrappers: list[ModelWrapper] = []
        #: Keys the patches add to every image's infotext (``{"freeu_b1": 1.3}``), recorded
        #: only when the patches were applied.
        self.infotext: dict[str, Any] = {}

    @property
    def model(self) -> torch.nn.Module | None:
        """The shared UNet, to read module names and config from (never to change); None when
        the patches were made without one."""
        return self._model

    def __bool__(self) -> bool:
        return bool(self._attention or self._pre_hooks or self._hooks or self._freeu or self._wrappers)

    def replace_attention(self, make: ProcessorFactory, where: Callable[[str, Any], bool]) -> None:
        """Use ``make(name, module, original)`` as the processor of each attention module
        ``where(name, module)`` selects; a later patch of the same module sees this one's
        processor as ``original``.

        Raises:
            ModelPatchError: ``where`` selects no attention module of the model.
        """
        if self._model is not None:
            _selected(self._model, where)
        self._attention.append(_AttentionPatch(make, where))

    def add_forward_pre_hook(self, module_name: str, hook: Callable[..., Any]) -> None:
        """``hook(module, args, kwargs)`` before submodule ``module_name`` runs; it returns None
        or replacement ``(args, kwargs)``. Raises ``ModelPatchError`` if the model has no such block."""
        if self._model is not None:
            _submodule(self._model, module_name)
        self._pre_hooks.append((module_name, hook))

    def add_forward_hook(self, module_name: str, hook: Callable[..., Any]) -> None:
        """``hook(module, args, kwargs, output)`` after submodule ``module_name`` ran; it returns
        None or a replacement output. Raises ``ModelPatchError`` if the model has no such block."""
        if self._model is not None:
            _submodule(self._model, module_name)
        self._hooks.append((module_name, hook))

    def enable_freeu(self, s1: float, s2: float, b1: float, b2: float) -> None:
        """FreeU (Si et al. 2023): backbone factors ``b1``/``b2`` and skip factors ``s1``/``s2``
        of the first two up stages; the last call wins.

        Raises:
            ModelPatchError: the model has no ``enable_freeu`` (not a diffusers UNet).
        """
        if self._model is not None and not hasattr(self._model, "enable_freeu"):
            raise ModelPatchError("FreeU needs a UNet; this model has none")
        self._freeu = (s1, s2, b1, b2)

    def add_model_wrapper(self, wrapper: ModelWrapper) -> None:
        """Wrap each UNet call of the job; the first wrapper added is the outermost."""
        self._wrappers.append(wrapper)

    def extend(self, other: ModelPatches) -> None:
        """Add ``other``'s patches after this one's (one script's patches into the job's)."""
        self._attention.extend(other._attention)
        self._pre_hooks.extend(other._pre_hooks)
        self._hooks.extend(other._hooks)
        self._freeu = other._freeu or self._freeu
        self._wrappers.extend(other._wrappers)
        self.infotext.update(other.infotext)

    def apply(self, clone: torch.nn.Module) -> None:
        """Apply every patch to ``clone`` (a ``weight_sharing_clone``, never the shared model).

        Raises:
            ModelPatchError: a hook names a submodule the model lacks, or an attention patch
                selects no module.
        """
        for patch in self._attention:
            for name, module in _selected(clone, patch.where):
                module.set_processor(patch.make(name, module, module.processor))
        for name, hook in self._pre_hooks:
            _submodule(clone, name).register_forward_pre_hook(hook, with_kwargs=True)
        for name, hook in self._hooks:
            _submodule(clone, name).register_forward_hook(hook, with_kwargs=True)
        if self._freeu is not None:
            s1, s2, b1, b2 = self._freeu
            clone.enable_freeu(s1=s1, s2=s2, b1=b1, b2=b2)  # type: ignore[operator]

    @property
    def wrappers(self) -> tuple[ModelWrapper, ...]:
        return tuple(self._wrappers)


def attention_modules(unet: torch.nn.Module) -> Iterator[tuple[str, Any]]:
    """(name, module) of every diffusers attention module of ``unet`` (those with a processor)."""
    for name, module in unet.named_modules():
        if hasattr(module, "set_processor") and hasattr(module, "processor"):
            yield name, module


def _selected(unet: torch.nn.Module, where: Callable[[str, Any], bool]) -> list[tuple[str, Any]]:
    chosen = [(name, module) for name, module in attention_modules(unet) if where(name, module)]
    if not chosen:
        example = next(attention_modules(unet), ("none",))[0]
        raise ModelPatchError(f"an attention patch selects no attention module of this model; names look like "
                              f"{example!r}")
    return chosen


def _submodule(unet: torch.nn.Module, name: str) -> torch.nn.Module:
    try:
        return unet.get_submodule(name)
    except AttributeError:
        top = ", ".join(n for n, _ in unet.named_children())
        raise ModelPatchError(f"the model has no block {name!r}; its top-level blocks are {top}") from None


def weight_sharing_clone(module: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``module``'s tree whose parameters and buffers are ``module``'s own
    objects: submodules, processors, hook dicts and config are new, no weight is copied.

    Accelerate's offload hooks (``_hf_hook``) are shared too: they hold the pipeline's other
    components, which must not be copied, and they move the shared weights either way.
    """
    memo: dict[int, Any] = {}
    for tensor in [*module.parameters(), *module.buffers()]:
        memo[id(tensor)] = tensor
    for sub in module.modules():
        hook = getattr(sub, "_hf_hook", None)
        if hook is not None:
            memo[id(hook)] = hook
    return copy.deepcopy(module, memo)


@dataclass(frozen=True)
class PatchedUNet:
    """A job's patched UNet: the clone and the model wrappers its calls go through."""

    module: torch.nn.Module
    wrappers: tuple[ModelWrapper, ...] = ()


def _plain_call(unet: Any) -> ModelFunction:
    def run(call: ModelCall) -> torch.Tensor:
        return unet(call.sample, call.timestep, encoder_hidden_states=call.encoder_hidden_states,
                    added_cond_kwargs=call.added_cond_kwargs, return_dict=False, **call.extra)[0]
    return run


def _wrapped(wrapper: ModelWrapper, inner: ModelFunction) -> ModelFunction:
    return lambda call: wrapper(call, inner)


def run_unet(unet: Any, call: ModelCall) -> torch.Tensor:
    """The UNet's (N, 4, h, w) output for ``call``: a plain UNet is called directly, a
    ``PatchedUNet`` through its wrappers (the first the outermost) around its clone."""
    if not isinstance(unet, PatchedUNet):
        return _plain_call(unet)(call)
    run = _plain_call(unet.module)
    for wrapper in reversed(unet.wrappers):
        run = _wrapped(wrapper, run)
    return run(call)


@contextlib.contextmanager
def patched_unet(unet: torch.nn.Module, patches: ModelPatches | None) -> Iterator[Any]:
    """The UNet a job calls: ``unet`` itself without patches, else a ``PatchedUNet`` on a
    weight-sharing clone with ``patches`` applied, dropped when the block ends.

    Raises:
        ModelPatchError: a patch does not fit this model (see ``ModelPatches.apply``).
    """
    if not patches:
        yield unet
        return
    clone = weight_sharing_clone(unet)
    patches.apply(clone)
    try:
        yield PatchedUNet(clone, patches.wrappers)
    finally:
        del clone
