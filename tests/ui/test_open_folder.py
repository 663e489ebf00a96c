"""📂: only a server that nobody else reaches opens folders on its machine; one without a desktop
says where the folder is instead (and only to a local visitor)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from modules.ui.open_folder import NoFileBrowserError, ServerBinding, open_folder, system_opener
from modules.ui.output_panel import open_output_folder


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "::1"])
def test_loopback_without_share_is_local(name: str) -> None:
    assert ServerBinding(name, share=False).is_local_only


@pytest.mark.parametrize(("name", "share"), [
    ("0.0.0.0", False),  # --listen
    ("127.0.0.1", True),  # --share tunnels a loopback server to the internet
    ("192.168.1.20", False),  # --server-name on the LAN
    ("::", False),
    ("127.0.0.2", False),  # loopback, but the launch rule (modules.exposure) names only the usual three
    ("my-host.example", False),  # a name may resolve anywhere
    (None, False),  # not launched (yet): unknown counts as exposed
    ("", False),
])
def test_exposed_or_unknown_servers_are_not_local(name: str | None, share: bool) -> None:
    assert not ServerBinding(name, share).is_local_only


def test_opening_creates_the_folder_and_calls_the_opener(tmp_path: Path) -> None:
    opened: list[Path] = []
    folder = tmp_path / "outputs" / "txt2img-images"
    assert open_folder(folder, ServerBinding("127.0.0.1", False), opened.append) == folder
    assert opened == [folder] and folder.is_dir()


def test_an_exposed_server_refuses_and_touches_nothing(tmp_path: Path) -> None:
    opened: list[Path] = []
    with pytest.raises(PermissionError, match="reachable from other machines"):
        open_folder(tmp_path / "new", ServerBinding("0.0.0.0", False), opened.append)
    assert opened == [] and not (tmp_path / "new").exists()


def test_each_platform_gets_an_opener() -> None:
    for platform in ("linux", "darwin", "win32"):
        assert callable(system_opener(platform))


HEADLESS: dict[str, str] = {}  # no DISPLAY, no WAYLAND_DISPLAY: ssh, a container, a service
DESKTOP = {"DISPLAY": ":0"}


def test_a_server_without_a_desktop_says_where_the_folder_is(tmp_path: Path) -> None:
    opener = system_opener("linux", HEADLESS, which=lambda name: "/usr/bin/xdg-open")
    with pytest.raises(NoFileBrowserError, match="without a desktop") as raised:
        opener(tmp_path)
    assert str(tmp_path) in str(raised.value) and raised.value.folder == tmp_path


@pytest.mark.parametrize("display", [{"DISPLAY": ":1"}, {"WAYLAND_DISPLAY": "wayland-0"}])
def test_a_desktop_without_xdg_open_says_so(tmp_path: Path, display: dict[str, str]) -> None:
    with pytest.raises(NoFileBrowserError, match="xdg-open is not installed") as raised:
        system_opener("linux", display, which=lambda name: None)(tmp_path)
    assert str(tmp_path) in str(raised.value)


@pytest.mark.skipif(sys.platform == "win32", reason="runs POSIX true/false as the opener")
def test_an_opener_that_fails_or_cannot_start_is_reported(tmp_path: Path) -> None:
    false, true = shutil.which("false"), shutil.which("true")
    assert false and true
    with pytest.raises(NoFileBrowserError, match="exit status 1"):
        system_opener("linux", DESKTOP, which=lambda name: false)(tmp_path)
    with pytest.raises(NoFileBrowserError, match="could not be started"):
        system_opener("linux", DESKTOP, which=lambda name: str(tmp_path / "missing" / "xdg-open"))(tmp_path)
    system_opener("linux", DESKTOP, which=lambda name: true)(tmp_path)  # it worked: nothing raised


def _headless(folder: Path) -> None:
    raise NoFileBrowserError("This server runs without a desktop (no DISPLAY or WAYLAND_DISPLAY)", folder)


def test_the_button_on_a_local_headless_server_shows_the_path(tmp_path: Path) -> None:
    folder = tmp_path / "outputs" / "txt2img-images"
    with pytest.warns(UserWarning, match="files are in"):
        message = open_output_folder(folder, ServerBinding("127.0.0.1", False), _headless)
    assert message is not None and str(folder) in message and "without a desktop" in message
    assert folder.is_dir()  # created, so the person can go there


def test_an_exposed_server_never_shows_the_path(tmp_path: Path) -> None:
    folder = tmp_path / "secret-place"
    with pytest.warns(UserWarning) as warnings:
        message = open_output_folder(folder, ServerBinding("0.0.0.0", False), _headless)
    assert message is None
    assert all(str(tmp_path) not in str(w.message) for w in warnings)
    assert any("reachable from other machines" in str(w.message) for w in warnings)


def test_a_folder_that_opened_leaves_the_message_line_alone(tmp_path: Path) -> None:
    opened: list[Path] = []
    assert open_output_folder(tmp_path, ServerBinding("localhost", False), opened.append) is None
    assert opened == [tmp_path]
