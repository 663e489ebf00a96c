"""Launch flags: secure by default (exposing the UI needs auth), every flag in --help, memory and
extension-access flags reach the context, and --share without internet keeps serving locally."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import pytest

from modules.app import build_app_context
from modules.cli import build_parser, main
from modules.models.memory import MemoryPolicy
from modules.server import AuthError, parse_auth
from tests.ui.live_server import start_server


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


#: Every flag the web UI issue names; ``--help`` must list each.
ISSUE_FLAGS = (
    "--listen", "--port", "--share", "--gradio-auth", "--gradio-auth-path", "--api-auth", "--nowebui", "--ckpt",
    "--ckpt-dir", "--data-dir", "--precision", "--no-half", "--device", "--lowvram", "--medvram",
    "--allow-pickle", "--enable-insecure-extension-access", "--autolaunch",
)


def test_help_lists_every_launch_flag() -> None:
    help_text = build_parser().format_help()
    missing = [flag for flag in ISSUE_FLAGS if not re.search(rf"{re.escape(flag)}\b(?!-)", help_text)]
    assert not missing, f"--help does not list {missing}"


def test_memory_and_extension_flags_reach_the_context(tmp_path: Path) -> None:
    args = build_parser().parse_args(["--data-dir", str(tmp_path), "--medvram", "--device", "cpu",
                                      "--listen", "--gradio-auth", "u:p"])
    assert MemoryPolicy.from_flags(args.medvram, args.lowvram) is MemoryPolicy.MODEL_OFFLOAD
    context = build_app_context(args)
    # On the CPU the weights already live in CPU memory: accepted, logged, no offload.
    assert context.models.placement.memory is MemoryPolicy.FULL
    assert context.extension_install_allowed is False
    args = build_parser().parse_args(["--data-dir", str(tmp_path), "--listen", "--enable-insecure-extension-access"])
    assert build_app_context(args).extension_install_allowed is True


# A proxy nobody listens on: every HTTPS request (the share service) fails at once, as offline,
# while the local HTTP server stays reachable; also where the machine does have internet.
_NO_INTERNET = {"HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def _wait_for_line(log: Path, text: str, limit_s: float) -> str:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if text in line:
                return line
        time.sleep(0.2)
    raise AssertionError(f"no line with {text!r} after {limit_s} s; log:\n{log.read_text(errors='replace')}")


@pytest.mark.slow
@pytest.mark.timeout(240)  # a hang guard only: about 10 s on an idle machine, several times that on a busy one
def test_share_without_internet_keeps_serving_locally(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    for url in start_server(tmp_path / "data", "--share", "--gradio-auth", "u:p", log_path=log, env=_NO_INTERNET):
        line = _wait_for_line(log, "could not create the public --share link", 60)
        assert url.rstrip("/") in line and "no internet" in line
        with urllib.request.urlopen(url, timeout=5) as response:  # the login page, still served
            assert response.status == 200
