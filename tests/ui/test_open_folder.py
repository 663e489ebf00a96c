"""📂: only a server that nobody else reaches opens folders on its machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from modules.ui.open_folder import ServerBinding, open_folder, system_opener


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
