"""A1111's read-only listings: ``/sd-vae``, ``/prompt-styles``, ``/face-restorers``,
``/extensions``, ``/cmd-flags``, and ``POST /refresh-vae``, in the shapes A1111 clients read."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from modules.models.vae import find_vae_files

if TYPE_CHECKING:
    from modules.studio import Studio

__all__ = ["add_listing_routes", "public_flags"]

# Flags whose values are credentials or point at them: reported as set or not, never their value
# (A1111's --ngrok is an authtoken, and its --ngrok-options JSON may hold basic_auth).
_SECRET_FLAG = re.compile(r"auth|token|password|secret|key|ngrok", re.IGNORECASE)


def public_flags(flags: Mapping[str, Any]) -> dict[str, Any]:
    """The command-line flags as JSON values, with secrets replaced by ``"<hidden>"`` (or None
    when unset), so ``/cmd-flags`` can be shown to anyone the API answers."""
    shown: dict[str, Any] = {}
    for name, value in flags.items():
        if _SECRET_FLAG.search(name):
            shown[name] = "<hidden>" if value else None
        elif isinstance(value, Path):
            shown[name] = str(value)
        elif isinstance(value, (list, tuple)):
            shown[name] = [str(v) if isinstance(v, Path) else v for v in value]
        elif value is None or isinstance(value, (str, int, float, bool)):
            shown[name] = value
        else:
            shown[name] = str(value)
    return shown


def add_listing_routes(router: APIRouter, studio: Studio, flags: Mapping[str, Any]) -> None:
    """Add the routes to ``router`` (the ``/sdapi/v1`` one); ``flags`` are the parsed command line."""
    shown_flags = public_flags(flags)

    @router.get("/sd-vae")
    def sd_vae() -> list[dict[str, Any]]:
        return [{"model_name": v.name, "filename": str(v.path)}
                for v in find_vae_files(studio.context.models.vae_roots)]

    @router.post("/refresh-vae")
    def refresh_vae() -> None:
        return None  # VAE folders are scanned on every listing: nothing is cached to refresh

    @router.get("/prompt-styles")
    def prompt_styles() -> list[dict[str, Any]]:
        return [{"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt}
                for s in studio.styles.load().values()]

    @router.get("/face-restorers")
    def face_restorers() -> list[dict[str, Any]]:
        return []  # none installed (see README: Extras)

    @router.get("/extensions")
    def extensions() -> list[dict[str, Any]]:
        return [{"name": e.name, "remote": None, "branch": None, "commit_hash": None, "commit_date": None,
                 "version": e.version, "enabled": e.enabled, "error": e.error} for e in studio.extensions()]

    @router.get("/cmd-flags")
    def cmd_flags() -> dict[str, Any]:
        return shown_flags
