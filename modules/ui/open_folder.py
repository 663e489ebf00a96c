"""The 📂 button: open an output folder in the OS file browser, only for a server nobody else reaches.

Opening a folder happens on the machine running the server. That is what the person at the
keyboard wants when the page is served on loopback; when the server is exposed (``--listen``,
``--share``, a non-loopback ``--server-name``) the visitor is elsewhere, so the button is
hidden and its handler refuses (A1111 hides it with ``--hide-ui-dir-config``). No gradio here:
the decision and the opener are plain functions, so tests inject a fake opener.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modules.exposure import is_exposed

__all__ = ["Opener", "ServerBinding", "open_folder", "system_opener"]

Opener = Callable[[Path], None]


@dataclass(frozen=True)
class ServerBinding:
    """Where the web server listens: the bound address (None: not started) and the share tunnel."""

    server_name: str | None
    share: bool

    @property
    def is_local_only(self) -> bool:
        """True when only this machine can reach the server (the launch-flag rule of ``modules.exposure``).

        ``--listen`` shows up here as the bound address 0.0.0.0, so the address and the share
        tunnel are all there is to check.
        """
        if not self.server_name:
            return False  # not launched (yet): unknown counts as exposed, the safe side
        return not is_exposed(listen=False, share=self.share, server_name=self.server_name)


def system_opener(platform: str = sys.platform) -> Opener:
    """The platform's "show this folder" command: Explorer, Finder, or the desktop's xdg-open."""
    if platform == "win32":
        return lambda folder: os.startfile(folder)  # type: ignore[attr-defined]  # Windows-only API
    command = "open" if platform == "darwin" else "xdg-open"

    def run(folder: Path) -> None:
        # Detached and silent: the file browser outlives the request and its output is noise here.
        subprocess.Popen([command, str(folder)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)

    return run


def open_folder(folder: Path, binding: ServerBinding, opener: Opener) -> Path:
    """Create ``folder`` if needed (a fresh install has none yet) and show it with ``opener``.

    Raises:
        PermissionError: the server is reachable from other machines.
        OSError: the folder cannot be created, or the opener failed (e.g. no xdg-open).
    """
    if not binding.is_local_only:
        raise PermissionError("Opening folders is disabled while the server is reachable from other machines.")
    folder.mkdir(parents=True, exist_ok=True)
    opener(folder)
    return folder
