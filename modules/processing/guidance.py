"""The guidance strengths a job takes, one place for their ranges and defaults: classifier-free
guidance (A1111's "CFG scale") and the guidance strength distilled into FLUX.1-dev (Forge's
"Distilled CFG Scale"). The first pass (``requests``) and Hires. fix (``hires``) both check
against these.
"""

from __future__ import annotations

__all__ = ["CFG_SCALE_RANGE", "DEFAULT_DISTILLED_CFG_SCALE", "DISTILLED_CFG_SCALE_RANGE"]

#: CFG scale's accepted range, inclusive (A1111's slider: 1 to 30; 1 turns CFG off).
CFG_SCALE_RANGE = (1.0, 30.0)
#: Forge's "Distilled CFG Scale" default: the guidance strength FLUX.1-dev was distilled around
#: (BFL's and diffusers' FluxPipeline default, 3.5). A job on a guidance-distilled model that
#: gives none uses it; the UI slider starts there.
DEFAULT_DISTILLED_CFG_SCALE = 3.5
#: Its accepted range, inclusive (Forge's slider: 0 to 30).
DISTILLED_CFG_SCALE_RANGE = (0.0, 30.0)
