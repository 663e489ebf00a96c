"""Exposure rules: which launch flags make the server reachable by others, and when the
Extensions tab may install extensions (A1111's ``--enable-insecure-extension-access``)."""

from __future__ import annotations

import itertools

import pytest

from modules.exposure import extension_install_allowed, is_exposed

SERVER_NAMES = (None, "127.0.0.1", "localhost", "::1", "0.0.0.0", "192.168.1.20", "studio.lan")
LOOPBACK = {None, "127.0.0.1", "localhost", "::1"}


@pytest.mark.parametrize(("listen", "share", "server_name"),
                         list(itertools.product((False, True), (False, True), SERVER_NAMES)))
def test_every_combination(listen: bool, share: bool, server_name: str | None) -> None:
    exposed = listen or share or server_name not in LOOPBACK
    assert is_exposed(listen, share, server_name) is exposed
    # Installing from the UI: always on this machine alone; when exposed only if insisted on.
    assert extension_install_allowed(listen, share, server_name, False) is (not exposed)
    assert extension_install_allowed(listen, share, server_name, True) is True


def test_named_cases() -> None:
    assert extension_install_allowed(False, False, None, False)
    assert not extension_install_allowed(True, False, None, False)  # --listen
    assert not extension_install_allowed(False, True, None, False)  # --share
    assert not extension_install_allowed(False, False, "0.0.0.0", False)  # --server-name 0.0.0.0
    assert extension_install_allowed(False, False, "localhost", False)  # loopback name: still local
    assert extension_install_allowed(True, True, "0.0.0.0", True)  # --enable-insecure-extension-access
