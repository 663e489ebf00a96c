"""Memory policies: A1111's ``--medvram`` and ``--lowvram`` as CPU offload of a model's components.

- ``MODEL_OFFLOAD`` (``--medvram``): each whole component (text encoder(s), UNet, VAE) is moved
  to the GPU only while it runs, one at a time, the others wait in CPU memory. This is what
  diffusers' ``enable_model_cpu_offload`` does with accelerate's ``cpu_offload_with_hook``.
- ``SEQUENTIAL_OFFLOAD`` (``--lowvram``): weights stay in CPU memory and each submodule's
  weights are copied to the GPU just for its own forward, as diffusers'
  ``enable_sequential_cpu_offload`` does with accelerate's ``cpu_offload``. Much slower, least VRAM.

The engine runs its own loop over the components, so the hooks sit on the components
themselves (accelerate hooks wrap ``forward``; diffusers' ``AutoencoderKL.encode``/``decode``
call the hook too). This module holds the cheap part (no accelerate import); ``offload.py``
attaches the hooks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import torch

__all__ = ["MemoryPolicy", "execution_device", "memory_usage", "model_bytes"]


class MemoryPolicy(Enum):
    """Where a loaded model's weights wait between uses."""

    FULL = "full"
    """Every component lives on the device (the default)."""
    MODEL_OFFLOAD = "medvram"
    """Whole components visit the device one at a time (``--medvram``)."""
    SEQUENTIAL_OFFLOAD = "lowvram"
    """Submodules visit the device one at a time (``--lowvram``)."""

    @classmethod
    def from_flags(cls, medvram: bool = False, lowvram: bool = False) -> MemoryPolicy:
        """The policy for A1111's flags; ``--lowvram`` wins over ``--medvram``, as in A1111."""
        if lowvram:
            return cls.SEQUENTIAL_OFFLOAD
        return cls.MODEL_OFFLOAD if medvram else cls.FULL

    @property
    def flag(self) -> str:
        """The command-line flag that selects this policy ("" for the default)."""
        return "" if self is MemoryPolicy.FULL else f"--{self.value}"


def _hook_device(hook: object) -> torch.device | None:
    # accelerate stacks hooks in a SequentialHook (``.hooks``); any of them may carry the device.
    for part in getattr(hook, "hooks", (hook,)):
        device = getattr(part, "execution_device", None)
        if device is not None:
            return torch.device(device)
    return None


def execution_device(module: torch.nn.Module) -> torch.device:
    """The device ``module`` computes on: where inputs must be sent.

    Without offload that is where its weights are. With offload the weights wait on the CPU
    (or on the meta device, for sequential offload) and the accelerate hooks, which accelerate
    stores as ``_hf_hook`` on the module and its submodules, know the execution device, as
    diffusers' ``DiffusionPipeline._execution_device`` reads it.
    """
    if not hasattr(module, "_hf_hook"):
        return next(module.parameters()).device
    for submodule in module.modules():
        device = _hook_device(getattr(submodule, "_hf_hook", None))
        if device is not None:
            return device
    return next(module.parameters()).device


def _module_bytes(module: Any) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters()) if module is not None else 0


def model_bytes(pipeline: Any) -> int:
    """Bytes of weights in a pipeline's UNet, text encoder(s) and VAE."""
    names = ("unet", "text_encoder", "text_encoder_2", "vae")
    return sum(_module_bytes(getattr(pipeline, name, None)) for name in names)


def _ram() -> dict[str, int | None]:
    """This machine's RAM and this process's share of it (Linux's /proc; None elsewhere)."""
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 0
    total = os.sysconf("SC_PHYS_PAGES") * page if page else None
    free = os.sysconf("SC_AVPHYS_PAGES") * page if page else None
    try:
        process = int(Path("/proc/self/statm").read_text().split()[1]) * page
    except (OSError, IndexError, ValueError):
        process = None
    return {"total": total, "free": free, "used": None if total is None or free is None else total - free,
            "process": process}


def memory_usage(models: Sequence[tuple[str, Any, torch.device]]) -> dict[str, Any]:
    """What memory holds now, in bytes, in the shape of A1111's ``/sdapi/v1/memory`` (``ram``,
    ``cuda``) plus ``models``: each loaded checkpoint's name, weight bytes and device.

    ``models`` is ``(name, pipeline, device of its denoising network)`` triples
    (``LoadedModel.denoising_module`` knows which network that is). ``cuda`` is ``{"error": ...}`` without a GPU.
    """
    usage: dict[str, Any] = {"ram": _ram()}
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        usage["cuda"] = {"system": {"free": free, "used": total - free, "total": total},
                         "active": {"current": torch.cuda.memory_allocated(),
                                    "peak": torch.cuda.max_memory_allocated()},
                         "reserved": {"current": torch.cuda.memory_reserved(),
                                      "peak": torch.cuda.max_memory_reserved()}}
    else:
        usage["cuda"] = {"error": "no CUDA device"}
    usage["models"] = [{"name": name, "bytes": model_bytes(pipeline), "device": str(device)}
                       for name, pipeline, device in models]
    return usage
