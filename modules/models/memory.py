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

from enum import Enum

import torch

__all__ = ["MemoryPolicy", "execution_device"]


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
