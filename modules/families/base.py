"""The ``ModelFamily`` contract: what one model architecture tells the rest of the studio.

A family is a frozen record plus the functions its package registers (``registry.py``). The
record answers what processing and the UI ask without knowing architectures: the latent format,
prediction type, defaults and capabilities. Its ``recognise`` function knows its files by their
tensor names and shapes. docs/architecture.md explains how the loop uses each field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from modules.paths import CONFIGS_DIR

if TYPE_CHECKING:
    import torch

__all__ = ["Capabilities", "CheckpointKeys", "FamilyCode", "FamilyDefaults", "FamilyPipeline", "LatentFormat",
           "ModelFamily", "ModelPartError", "PartFolders", "Prediction", "Recogniser", "TextEmbeddings",
           "UnknownFamilyError"]

#: What the denoiser predicts (``processing/denoiser_view.py`` turns each into x0).
Prediction = Literal["epsilon", "v_prediction", "flow"]


class UnknownFamilyError(ValueError):
    """The keys do not look like any supported model."""


class ModelPartError(Exception):
    """A part a model needs besides its checkpoint (a text encoder, a VAE) is missing, ambiguous
    or unusable. The message says what to put where or what to choose; ``part`` names the kind
    ("t5xxl", "clip_l", "vae"). Not a fault of the checkpoint: it is not blocked for it."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(message)
        self.part = part


class CheckpointKeys(Protocol):
    """A read-only view of a checkpoint's tensors (from its header, or a loaded state dict)."""

    def has(self, key: str) -> bool:
        """Whether a tensor of that name exists."""

    def shape(self, key: str) -> tuple[int, ...] | None:
        """The tensor's shape, or None when absent."""


@dataclass(frozen=True)
class LatentFormat:
    """The latent space of the family's autoencoder.

    Attributes:
        channels: latent channels C (4 for SD's VAE).
        scaling_factor / shift_factor: the diffusion model sees ``(z - shift) * scale`` of the
            VAE's latents z (Rombach et al. 2022, Sec. 4.3.2 and Appendix G).
        downscale: pixels per latent, per side.
        preview_factors: a C x 3 linear map from latents (as the sampler holds them) to RGB in
            -1..1, for A1111's "Approx cheap" live preview.
    """

    channels: int
    scaling_factor: float
    preview_factors: tuple[tuple[float, float, float], ...]
    shift_factor: float = 0.0
    downscale: int = 8


@dataclass(frozen=True)
class FamilyDefaults:
    """What a new job uses when the user says nothing (and the UI shows first)."""

    size: int
    sampler: str = "DPM++ 2M"
    scheduler: str = "Automatic"
    cfg_scale: float = 7.0
    steps: int = 20


@dataclass(frozen=True)
class Capabilities:
    """What the family's models can do.

    Attributes:
        negative_prompt: real CFG with a negative prompt (Ho & Salimans 2022).
        distilled_guidance: a guidance-strength input distilled into the model (FLUX dev).
        inpaint_channels: extra UNet input channels of its inpainting variant (mask + masked
            image latents: 5), 0 when it is not one.
        micro_conditioning: SDXL's size/crop conditioning (Podell et al. 2023, Sec. 2.2).
        controlnet: ControlNet units apply to it.
        lora_key_maps: the LoRA key layouts its loader maps ("kohya", "diffusers", "bfl").
    """

    negative_prompt: bool = True
    distilled_guidance: bool = False
    inpaint_channels: int = 0
    micro_conditioning: bool = False
    controlnet: bool = True
    lora_key_maps: tuple[str, ...] = ("kohya", "diffusers")


@dataclass(frozen=True)
class PartFolders:
    """Where a family that loads its parts from files of their own finds them (Forge's layout).

    Attributes:
        text_encoder: the ``models/text_encoder`` folders.
        vae: the ``models/VAE`` folders.
        chosen: Forge's ``forge_additional_modules``, the file names the user picked there.
    """

    text_encoder: tuple[Path, ...] = ()
    vae: tuple[Path, ...] = ()
    chosen: tuple[str, ...] = ()


@dataclass(frozen=True)
class TextEmbeddings:
    """One prompt's conditioning from a family's own text encoders.

    Attributes:
        embeds: (1, T, D) hidden states the denoiser attends to (FLUX: T5's, T = 512 or 256, D = 4096).
        pooled: (1, P) pooled embedding (FLUX: CLIP-L's, P = 768), or None.
    """

    embeds: torch.Tensor
    pooled: torch.Tensor | None


@dataclass(frozen=True)
class FamilyPipeline:
    """What a family's loader returns.

    Attributes:
        pipeline: the diffusers pipeline holding its components (on the CPU, eval mode).
        part_files: the names of the part files it uses besides the checkpoint (Forge's
            "Module 1: ae.safetensors" infotext keys), in Forge's order.
    """

    pipeline: Any
    part_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class FamilyCode:
    """What a family does in its own code where Stable Diffusion's shared path does not fit.

    A family without it (SD1.x, SD2.x, SDXL) loads through diffusers' single-file loader with the
    shipped configs, encodes with CLIP (A1111's weighting and chunks) and is its pipeline's ``unet``.

    Attributes:
        load: ``(checkpoint file or folder, part folders, dtype) -> FamilyPipeline``. Raises ``ModelFileError`` for a
            broken file and ``ModelPartError`` for a missing part.
        encode_prompt: ``(pipeline, text) -> TextEmbeddings`` for one prompt text, emphasis
            syntax already removed; on the text encoders' execution device.
        denoiser: ``(denoising module, distilled guidance or None) -> module`` called like a
            diffusers UNet (``sample, timestep, encoder_hidden_states, added_cond_kwargs``):
            latents stay (B, C, H/8, W/8) in the loop whatever the model takes.
        denoising_component: the pipeline attribute holding the denoising module.
    """

    load: Callable[[Path, PartFolders, torch.dtype], FamilyPipeline]
    encode_prompt: Callable[[Any, str], TextEmbeddings]
    denoiser: Callable[[Any, float | None], Any]
    denoising_component: str = "transformer"


@dataclass(frozen=True)
class ModelFamily:
    """One model family.

    Attributes:
        id: stable id ("sd15", "sdxl_inpaint", "flux"); recorded in jobs and previews.
        label: what users read ("SD1.x", "SDXL inpainting").
        base: the id of the base family an inpainting variant belongs to (itself otherwise);
            ControlNets and LoRAs made for the base fit its variants.
        pipeline_class: the diffusers pipeline its components load into.
        latent: its latent format.
        prediction: what its denoiser predicts by default (a file may say otherwise: SD2.x-v).
        defaults / capabilities: see those classes.
        text_context_width: the width of its text conditioning (UNet cross-attention), which
            ControlNets and LoRAs made for it share.
        align_your_steps: Sabour et al. 2024's published 10-step sigma table for it, or ().
        code: its own loading, text encoding and denoiser call, or None for SD's shared path.
    """

    id: str
    label: str
    base: str
    pipeline_class: str
    latent: LatentFormat
    prediction: Prediction
    defaults: FamilyDefaults
    capabilities: Capabilities
    text_context_width: int
    align_your_steps: tuple[float, ...] = ()
    code: FamilyCode | None = None

    @property
    def config_dir(self) -> Path:
        """The diffusers config folder it ships (offline loading; modules/models/configs/README.md)."""
        return CONFIGS_DIR / self.id

    @property
    def is_inpaint(self) -> bool:
        return self.capabilities.inpaint_channels > 0

    @property
    def has_unet(self) -> bool:
        """Whether its denoiser is a UNet (SD's path), which UNet-shaped patches (FreeU's skip
        scaling, PAG's mid-block attention) need; a flow transformer (FLUX.1) is not one."""
        return self.code is None or self.code.denoising_component == "unet"


#: A family package's detector: the family of a checkpoint's keys, or None when not its own.
#: It may raise ``UnknownFamilyError`` for a file that is its kind but unsupported (SDXL refiner).
Recogniser = Callable[[CheckpointKeys], "ModelFamily | None"]
