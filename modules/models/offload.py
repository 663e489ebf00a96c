"""Attach accelerate's CPU-offload hooks to a loaded model's components (see ``memory.py``).

Imported only when ``--medvram`` or ``--lowvram`` is in use, so accelerate stays out of the
web server's start-up.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from accelerate import cpu_offload, cpu_offload_with_hook
from accelerate.hooks import ModelHook, add_hook_to_module

from modules.models.memory import MemoryPolicy

__all__ = ["OFFLOADED_COMPONENTS", "ComponentOffload"]

logger = logging.getLogger(__name__)

#: Pipeline components that are offloaded, in the order a job uses them (diffusers'
#: ``model_cpu_offload_seq`` for the SD, SDXL and FLUX pipelines).
OFFLOADED_COMPONENTS = ("text_encoder", "text_encoder_2", "unet", "transformer", "vae")

_CPU = torch.device("cpu")


def _weights_device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


class _OffloadOthers(ModelHook):
    """Before a component runs, send the other components of its model back to the CPU.

    accelerate's own chaining (``prev_module_hook``) offloads only the one component listed
    before, so a VAE used before the UNet (inpainting, img2img) or the VAE left over from the
    previous job would share the GPU with the UNet for the whole loop. Offloading every other
    member keeps one whole component on the GPU at a time, which is what ``--medvram`` promises.
    """

    def __init__(self, members: dict[str, torch.nn.Module]) -> None:
        self.members = members  # the owning ComponentOffload's live table (a VAE can be swapped)

    def pre_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        for other in self.members.values():
            if other is not module and _weights_device(other) != _CPU:
                other.to(_CPU)
        return args, kwargs


class ComponentOffload:
    """The offload state of one loaded model: its policy, execution device and hooked components.

    Args:
        policy: ``MODEL_OFFLOAD`` or ``SEQUENTIAL_OFFLOAD``.
        device: the execution device (where each component runs).
    """

    def __init__(self, policy: MemoryPolicy, device: torch.device) -> None:
        if policy is MemoryPolicy.FULL:
            raise ValueError("ComponentOffload needs an offload policy, not MemoryPolicy.FULL")
        self.policy = policy
        # accelerate compares this with the weights' device to skip needless moves; a bare
        # "cuda" never equals "cuda:0", so name the index.
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        self.members: dict[str, torch.nn.Module] = {}

    def attach(self, name: str, module: torch.nn.Module) -> None:
        """Offload ``module``, which becomes the pipeline's component ``name``.

        A module that already has our hooks (the checkpoint's own VAE coming back after an
        external one) keeps them. For model offload the component it replaces is sent to the
        CPU first, so a swapped-out VAE does not stay on the GPU.
        """
        previous = self.members.get(name)
        self.members[name] = module
        if self.policy is MemoryPolicy.SEQUENTIAL_OFFLOAD:
            # Sequentially offloaded weights wait on the meta device with a CPU copy in the
            # hooks: nothing to move back, and the hooks must stay for the module to work.
            if not hasattr(module, "_hf_hook"):
                # As diffusers: offload buffers too unless the component's own (top-level)
                # parameters are empty, as for transformers' CLIP models.
                cpu_offload(module, self.device, offload_buffers=len(module._parameters) > 0)
            return
        if previous is not None and previous is not module and _weights_device(previous) != _CPU:
            previous.to(_CPU)
        if hasattr(module, "_hf_hook"):
            return
        add_hook_to_module(module, _OffloadOthers(self.members))
        # Appended after _OffloadOthers: the others leave the GPU before this one arrives.
        cpu_offload_with_hook(module, self.device)

    def attach_pipeline(self, pipeline: Any) -> None:
        """Offload every component of ``pipeline`` that it has (see ``OFFLOADED_COMPONENTS``)."""
        for name in OFFLOADED_COMPONENTS:
            module = getattr(pipeline, name, None)
            if isinstance(module, torch.nn.Module):
                self.attach(name, module)
        logger.info("%s: components offloaded to the CPU, run on %s", self.policy.flag, self.device)
