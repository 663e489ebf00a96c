"""Secure by default: exposing the UI beyond this machine needs auth."""

from __future__ import annotations

from pathlib import Path

import pytest

from modules.cli import main
from modules.server import AuthError, parse_auth


@pytest.mark.parametrize("flags", [["--listen"], ["--share"], ["--server-name", "0.0.0.0"]])
def test_exposed_without_auth_refuses_to_start(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(flags) == 2
    err = capsys.readouterr().err
    assert "--gradio-auth" in err and "--insecure-no-auth" in err
    assert len(err.strip().splitlines()) == 1


def test_auth_parsing(tmp_path: Path) -> None:
    assert parse_auth("a:1,b:2", None) == [("a", "1"), ("b", "2")]
    file = tmp_path / "auth.txt"
    file.write_text("c:3\n\nd:4:with-colon\n", encoding="utf-8")
    assert parse_auth(None, file) == [("c", "3"), ("d", "4:with-colon")]
    for bad in ("nopassword", ":x", "u:"):
        with pytest.raises(AuthError):
            parse_auth(bad, None)
    with pytest.raises(AuthError, match="cannot read"):
        parse_auth(None, tmp_path / "missing.txt")
