"""Launch flags: secure by default (exposing the UI needs auth), every flag in --help, memory and
extension-access flags reach the context, --share without internet keeps serving locally, and
A1111's launch flags are accepted (mapped onto ours or named as ignored) without prefix matching."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from modules.a1111_flags import A1111_FLAGS, NATIVE_FLAGS, resolve_a1111_flags
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


# --- A1111's launch flags (modules/a1111_flags.py) ---

#: Flags A1111 launch scripts pass, several of which argparse's prefix matching used to misread.
A1111_SCRIPT_FLAGS = ["--api", "--xformers", "--no-half-vae", "--skip-torch-cuda-test", "--theme", "dark",
                      "--opt-sdp-attention", "--cors-allow-origins", "http://a.example,http://b.example",
                      "--timeout-keep-alive", "30", "--api-log", "--api-server-stop", "--skip-install"]


def _ignored(lines: list[str]) -> list[str]:
    found = [line for line in lines if line.startswith("A1111 flags accepted and ignored: ")]
    assert len(found) == 1, lines
    return found[0].removeprefix("A1111 flags accepted and ignored: ").split(", ")


def test_a1111_launch_flags_parse_and_the_ignored_ones_are_named_once() -> None:
    args = build_parser().parse_args([*A1111_SCRIPT_FLAGS, "--port", "7861"])
    assert args.api is True and args.xformers is True and args.theme == "dark" and args.port == 7861
    assert args.api_auth is None  # --api is its own flag now, not a prefix of --api-auth
    resolved, lines = resolve_a1111_flags(args)
    assert len(lines) == 2, lines
    assert lines[0] == ("A1111 flags applied: --api (the REST API is always on), "
                        "--theme (the page's theme while the Theme setting says system)")
    assert sorted(_ignored(lines)) == sorted(f for f in A1111_SCRIPT_FLAGS
                                             if f.startswith("--") and f not in ("--api", "--theme"))
    assert vars(resolved) == vars(args)  # nothing here maps onto one of our flags


def test_a1111_flags_that_map_onto_ours_reach_the_context(tmp_path: Path) -> None:
    folders = {kind: tmp_path / kind for kind in ("vae", "esrgan", "swinir", "controlnet", "lyco")}
    args = build_parser().parse_args([
        "--data-dir", str(tmp_path / "data"), "--use-cpu", "all", "--precision", "full", "--disable-safe-unpickle",
        "--disable-extra-extensions", "--disable-all-extensions", "--vae-dir", str(folders["vae"]),
        "--esrgan-models-path", str(folders["esrgan"]), "--swinir-models-path", str(folders["swinir"]),
        "--controlnet-dir", str(folders["controlnet"]), "--lyco-dir-backcompat", str(folders["lyco"])])
    assert args.precision == "fp32"  # A1111's "full", as our value
    resolved, lines = resolve_a1111_flags(args)
    assert args.device is None and resolved.device == "cpu"  # the parsed flags stay as given
    assert len(lines) == 1 and "--use-cpu (as --device cpu)" in lines[0], lines
    assert "--disable-all-extensions (as --disable-extensions all)" in lines[0]
    context = build_app_context(resolved)
    assert str(context.models.placement.device) == "cpu" and str(context.models.placement.dtype) == "torch.float32"
    assert folders["vae"] in context.models.vae_roots and folders["lyco"] in context.models.loras.roots
    assert {folders["esrgan"], folders["swinir"]} <= set(context.upscalers.folders)
    assert tmp_path / "data" / "models" / "ESRGAN" in context.upscalers.folders  # still scanned
    assert context.controlnets is not None and folders["controlnet"] in context.controlnets.roots
    assert context.models.allow_pickle is True and context.disable_extensions == "all"


_CUDA = torch.cuda.is_available()


@pytest.mark.parametrize(("flags", "device", "ignored"), [
    (["--use-cpu", "interrogate", "sd"], None, True),  # single modules: no equivalent
    (["--device", "cuda:1", "--use-cpu", "all"], "cuda:1", True),  # our --device wins
    (["--use-cpu", "ALL"], "cpu", False),
    (["--device-id", "1"], "cuda:1" if _CUDA else None, not _CUDA),  # A1111 uses it only with CUDA
    (["--device", "cpu", "--device-id", "1"], "cpu", True),
])
def test_device_flags_map_only_when_they_mean_ours_and_never_override_device(
        flags: list[str], device: str | None, ignored: bool) -> None:
    resolved, lines = resolve_a1111_flags(build_parser().parse_args(flags))
    assert resolved.device == device
    a1111_flag = "--use-cpu" if "--use-cpu" in flags else "--device-id"
    assert (lines == [f"A1111 flags accepted and ignored: {a1111_flag}"]) is ignored, lines


def test_cmd_flags_hide_the_a1111_secrets() -> None:
    from modules.api.listings import public_flags

    args = build_parser().parse_args(["--ngrok", "2abcTOKEN", "--ngrok-options", '{"basic_auth": "u:p"}',
                                      "--tls-keyfile", "/k.pem", "--xformers"])
    shown = public_flags(vars(args))
    assert shown["ngrok"] == shown["ngrok_options"] == shown["tls_keyfile"] == "<hidden>"
    assert shown["xformers"] is True and shown["api"] is False  # A1111's names, as its clients read them


def test_api_auth_still_works_and_is_not_taken_for_api() -> None:
    args = build_parser().parse_args(["--api-auth", "user:pass"])
    assert args.api_auth == "user:pass" and args.api is False
    args = build_parser().parse_args(["--api", "--api-auth=user:pass"])
    assert args.api_auth == "user:pass" and args.api is True


@pytest.mark.parametrize(("flags", "named"), [
    (["--api-au", "x"], "--api-au"),  # a prefix of --api-auth: taken for it before
    (["--gradio-au", "u:p"], "--gradio-au"),
    (["--listen", "--no-such-flag"], "--no-such-flag"),
    (["--precision", "fp8"], "--precision"),
    (["--use-cpu"], "--use-cpu"),  # needs at least one value, as in A1111
    (["generate", "--prompt", "x", "--neg", "y"], "--neg"),  # a prefix of --negative-prompt
])
def test_abbreviations_and_unknown_flags_exit_2_in_one_line(flags: list[str], named: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(flags)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert named in err


def test_help_lists_the_a1111_flags_in_their_own_group() -> None:
    parser = build_parser()
    known = set(parser._option_string_actions)  # every option string the parser accepts
    table = [entry.flag for entry in A1111_FLAGS]
    assert len(table) == len(set(table)) and not set(table) & set(NATIVE_FLAGS)
    assert set(NATIVE_FLAGS) <= known  # ours, with A1111's name and meaning
    help_text = parser.format_help()
    group = help_text.split("A1111 compatibility:", 1)[1]
    missing = [flag for flag in table if not re.search(rf"(^|\s){re.escape(flag)}\b(?!-)", group, re.MULTILINE)]
    assert not missing, f"the A1111 group of --help lacks {missing}"
    assert "always on" in group and "SDPA" in group


@pytest.mark.slow
@pytest.mark.timeout(240)  # a hang guard only
def test_server_starts_with_a1111_flags_and_serves_the_api(tmp_path: Path) -> None:
    import httpx

    log = tmp_path / "server.log"
    flags = ("--api", "--xformers", "--opt-sdp-attention", "--no-half-vae", "--skip-torch-cuda-test",
             "--api-auth", "u:p")
    for url in start_server(tmp_path / "data", *flags, log_path=log):
        line = _wait_for_line(log, "A1111 flags accepted and ignored", 30)
        assert line.endswith("A1111 flags accepted and ignored: --skip-torch-cuda-test, --no-half-vae, "
                             "--xformers, --opt-sdp-attention"), line
        assert "aigen: A1111 flags applied: --api (the REST API is always on)" in log.read_text()
        samplers = httpx.get(url + "sdapi/v1/samplers", auth=("u", "p"), timeout=30)
        assert samplers.status_code == 200 and "Euler a" in {s["name"] for s in samplers.json()}
        assert httpx.get(url + "sdapi/v1/samplers", timeout=30).status_code == 401  # --api-auth applies
        # A1111's UI ping sits at the root, behind the API's auth.
        assert httpx.get(url + "internal/ping", timeout=30).status_code == 401
        ping = httpx.get(url + "internal/ping", auth=("u", "p"), timeout=30)
        assert ping.status_code == 200 and ping.json() == {}
