"""FreeU (Si et al. 2023, "FreeU: Free Lunch in Diffusion U-Net"): re-weight the UNet's
decoder for one job, with no training and no extra model evaluation.

In the first two up stages the backbone features are scaled up (``b1``, ``b2``: the paper's
structure-related scaling, Sec. 3.2) and the low frequencies of the skip features are scaled
down (``s1``, ``s2``: its spectral modulation), which denoises more strongly with less high-
frequency clutter. It goes on the job's weight-sharing clone of the UNet through diffusers'
public ``enable_freeu`` (``ModelPatches.enable_freeu``); the shared model never changes.

"Recommended for the model" uses the values the FreeU authors publish for the job's family
(their README's SD1.5, SD2.1 and SDXL values). The infotext records the values that ran,
under Forge's keys (``freeu_enabled``, ``freeu_b1`` ...), and the preset under
``freeu_preset``; pasting it back sets all of them. Forge clients send ``[enabled, b1, b2,
s1, s2, start, end]``; its start/end step range is not supported here beyond the whole run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from modules.extensions.api import (
    AlwaysVisible,
    Checkbox,
    Dropdown,
    JobModel,
    ModelPatches,
    Script,
    ScriptArgError,
    ScriptCheckError,
    Slider,
    Txt2ImgRequest,
    args_by_position,
)

RECOMMENDED = "Recommended for the model"
CUSTOM = "Custom"
#: The FreeU authors' values (b1, b2, s1, s2) per model generation (FreeU README, "Parameters").
PRESETS: Mapping[str, tuple[float, float, float, float]] = MappingProxyType({
    "SD 1.x": (1.5, 1.6, 0.9, 0.2),
    "SD 2.x": (1.4, 1.6, 0.9, 0.2),
    "SDXL": (1.3, 1.4, 0.9, 0.2),
})
#: Which preset "Recommended" means for a model family id (by its prefix).
FAMILY_PRESETS = (("sdxl", "SDXL"), ("sd2", "SD 2.x"), ("sd15", "SD 1.x"))
#: Forge's positional order (``FreeUForForge.ui``), after ``p``.
FORGE_ARGS = ("enabled", "b1", "b2", "s1", "s2", "start", "end")
#: infotext key -> argument (Forge's keys, and ours for the preset).
PASTE_FIELDS = MappingProxyType({"freeu_enabled": "enabled", "freeu_preset": "preset", "freeu_b1": "b1",
                                 "freeu_b2": "b2", "freeu_s1": "s1", "freeu_s2": "s2"})


def family_preset(family: str) -> str | None:
    """The preset name recommended for a family id ("sdxl_inpaint" -> "SDXL"), or None."""
    return next((preset for prefix, preset in FAMILY_PRESETS if family.startswith(prefix)), None)


def freeu_values(preset: str, family: str, custom: tuple[float, float, float, float],
                 ) -> tuple[str, tuple[float, float, float, float]]:
    """(the preset that applies, its (b1, b2, s1, s2)); ``custom`` for "Custom".

    Raises:
        ScriptArgError: "Recommended" for a family FreeU has no values for.
    """
    if preset == CUSTOM:
        return CUSTOM, custom
    if preset == RECOMMENDED:
        chosen = family_preset(family)
        if chosen is None:
            raise ScriptArgError(f"FreeU: no recommended values for a {family or 'unknown'} model; choose a preset "
                                 "or Custom")
        preset = chosen
    return preset, PRESETS[preset]


class FreeU(Script):
    def title(self) -> str:
        return "FreeU"

    def show(self, is_img2img: bool) -> object:
        return AlwaysVisible

    def ui(self, is_img2img: bool) -> dict:
        b1, b2, s1, s2 = PRESETS["SD 1.x"]
        return {
            "enabled": Checkbox("Enable FreeU", False),
            "preset": Dropdown("Values", (RECOMMENDED, *PRESETS, CUSTOM), RECOMMENDED,
                               info="Custom uses the four sliders"),
            "b1": Slider("B1: backbone factor, first up stage", 0.0, 3.0, b1, step=0.01),
            "b2": Slider("B2: backbone factor, second up stage", 0.0, 3.0, b2, step=0.01),
            "s1": Slider("S1: skip factor, first up stage", 0.0, 3.0, s1, step=0.01),
            "s2": Slider("S2: skip factor, second up stage", 0.0, 3.0, s2, step=0.01),
        }

    def api_args(self, positional: Sequence[Any], is_img2img: bool) -> dict[str, Any]:
        named = args_by_position(self.title(), FORGE_ARGS, positional)
        start, end = named.pop("start", 0.0), named.pop("end", 1.0)
        if (start, end) != (0.0, 1.0):
            raise ScriptArgError(f"FreeU: a start/end step range ({start}, {end}) is not supported; send 0 and 1")
        if {"b1", "b2", "s1", "s2"} & set(named):
            named["preset"] = CUSTOM  # a Forge client's values are its own
        return named

    def check(self, p: Txt2ImgRequest, model: JobModel | None, enabled: bool, preset: str, **args: Any) -> None:
        if enabled and model is not None and not model.family.has_unet:
            raise ScriptCheckError(f"FreeU scales a UNet's skip connections; {model.family.label} has no UNet "
                                   "(turn FreeU off for it)", "enabled")
        if enabled and model is not None and preset == RECOMMENDED and family_preset(model.family.id) is None:
            raise ScriptCheckError(f"FreeU has no recommended values for {model.family.label} models", "preset")

    def patch_model(self, p: Txt2ImgRequest, patches: ModelPatches, enabled: bool, preset: str, b1: float,
                    b2: float, s1: float, s2: float) -> None:
        if not enabled:
            return
        preset, (b1, b2, s1, s2) = freeu_values(preset, patches.family, (b1, b2, s1, s2))
        patches.enable_freeu(s1=s1, s2=s2, b1=b1, b2=b2)
        patches.infotext.update(freeu_enabled=True, freeu_preset=preset, freeu_b1=b1, freeu_b2=b2, freeu_s1=s1,
                                freeu_s2=s2)

    def paste_fields(self) -> Mapping[str, str]:
        return PASTE_FIELDS
