"""The 📂 button: open an output folder in the OS file browser, only for a server nobody else reaches.

Opening a folder happens on the machine running the server. That is what the person at the
keyboard wants when the page is served on loopback; when the server is exposed (``--listen``,
``--share``, a non-loopback ``--server-name``) the visitor is elsewhere, so the button is
hidden and its handler refuses (A1111 hides it with ``--hide-ui-dir-config``). A local server
without a desktop (ssh, a container) cannot show the folder; it tells the person at the keyboard
where the folder is, which only they get to see (the exposure check comes first). No gradio here:
the decision and the opener are plain functions, so tests inject a fake opener.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from modules.exposure import is_exposed

__all__ = ["NoFileBrowserError", "Opener", "ServerBinding", "open_folder", "system_opener"]

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


class NoFileBrowserError(OSError):
    """This machine cannot show a folder (no desktop session, no xdg-open, or it failed); the
    message says why, and ``folder`` is where the files are."""

    def __init__(self, reason: str, folder: Path) -> None:
        super().__init__(f"{reason}, so the folder cannot be opened here. The files are in: {folder}")
        self.reason = reason
        self.folder = folder


#: How long xdg-open may take to fail before it counts as having opened the folder: it hands
#: the folder to the file browser and exits within this when it works (or fails) at all.
SETTLE_S = 2.0


def system_opener(platform: str = sys.platform, environ: Mapping[str, str] = os.environ,
                  which: Callable[[str], str | None] = shutil.which) -> Opener:
    """The platform's "show this folder" command: Explorer, Finder, or the desktop's xdg-open.

    On Linux a server started without a desktop (no ``DISPLAY`` / ``WAYLAND_DISPLAY``: ssh, a
    container, a service) has no file browser to show; xdg-open would fail quietly in the
    background. The opener raises ``NoFileBrowserError`` then, and when xdg-open is missing or
    exits with an error, so the page can say where the folder is instead.
    """
    if platform == "win32":
        return lambda folder: os.startfile(folder)  # type: ignore[attr-defined]  # Windows-only API
    if platform == "darwin":
        return lambda folder: _launch(["open", str(folder)], folder)

    def run(folder: Path) -> None:
        if not (environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")):
            raise NoFileBrowserError("This server runs without a desktop (no DISPLAY or WAYLAND_DISPLAY)", folder)
        command = which("xdg-open")
        if command is None:
            raise NoFileBrowserError("xdg-open is not installed on this server", folder)
        _launch([command, str(folder)], folder)

    return run


def _launch(command: list[str], folder: Path) -> None:
    """Run the opener detached (the file browser outlives the request; its output is noise here)
    and wait briefly for an early failure."""
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError as error:
        raise NoFileBrowserError(f"{command[0]} could not be started ({error.strerror or error})", folder) from None
    try:
        code = process.wait(SETTLE_S)
    except subprocess.TimeoutExpired:
        return  # still handing over to the file browser: it works
    if code != 0:
        raise NoFileBrowserError(f"{Path(command[0]).name} failed (exit status {code})", folder)


def open_folder(folder: Path, binding: ServerBinding, opener: Opener) -> Path:
    """Create ``folder`` if needed (a fresh install has none yet) and show it with ``opener``.

    Raises:
        PermissionError: the server is reachable from other machines (checked first, so any
            other error, which names the folder, is only raised to the person at this machine).
        NoFileBrowserError: this machine has no file browser to show it in.
        OSError: the folder cannot be created.
    """
    if not binding.is_local_only:
        raise PermissionError("Opening folders is disabled while the server is reachable from other machines.")
    folder.mkdir(parents=True, exist_ok=True)
    opener(folder)
    return folder
