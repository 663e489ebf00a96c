"""Installing a model from a URL, attacked by the server it downloads from: an HTML page and a
git-lfs pointer served as ``.safetensors`` (and as ``.ckpt``) are refused before they get a
model's name, and a server that trickles bytes, goes silent, or streams past the deadline is
cut off. In every case the model folder is left exactly as it was: no model, no temp file.

The installer is the studio's own (``ModelTools.install_url``, which the Models tab calls;
installing is off on ``--listen``, so there is no live route to attack on the shared server),
against a real threaded HTTP server on 127.0.0.1. The limits are made small through
``DownloadLimits``, the one place they are set.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from modules.app import build_app_context
from modules.model_tools import ModelTools
from modules.models.install import DownloadLimits, ModelInstallError

HTML_PAGE = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Log in to download</body></html>\n"
LFS_POINTER = (b"version https://git-lfs.github.com/spec/v1\n"
               b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 2132625894\n")
#: Small limits for the test: 1 KB/s over half a second; two seconds in all.
LIMITS = DownloadLimits(deadline_s=2.0, min_rate_bytes_s=1024, rate_window_s=0.5)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        name = self.path.rsplit("/", 1)[-1]
        if self.path.startswith("/html/"):
            self._send(HTML_PAGE, "text/html")
        elif self.path.startswith("/lfs/"):
            self._send(LFS_POINTER, "text/plain")
        elif self.path.startswith("/trickle/"):
            self._drip(100_000, 1, 0.02)  # 50 bytes/s: the "1 byte/s" attack, sped up
        elif self.path.startswith("/silent/"):
            self._drip(100_000, 0, 5.0)  # headers, then nothing
        elif self.path.startswith("/long/"):
            self._drip(10**9, 4096, 0.01)  # ~400 KB/s, fast enough, but it would never end
        else:
            self._send(b"not found " + name.encode(), "text/plain", 404)

    def _send(self, body: bytes, content_type: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _drip(self, length: int, size: int, pause_s: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        sent = 0
        try:
            while sent < length:
                if size:
                    self.wfile.write(b"\0" * size)
                    self.wfile.flush()
                    sent += size
                time.sleep(pause_s)
        except OSError:
            return  # the installer hung up: what it should do

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def hostile_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def tools(tmp_path: Path) -> ModelTools:
    args = argparse.Namespace(data_dir=tmp_path, ckpt_dir=[], precision="fp32", no_half=False, device="cpu",
                              allow_pickle=False)
    return ModelTools(build_app_context(args), download_limits=LIMITS)


def _refused(tools: ModelTools, url: str, kind: str = "lora") -> str:
    folder = tools.folders(kind)[0]
    before = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    with pytest.raises(ModelInstallError) as raised:
        tools.install_url(kind, url)
    after = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    assert after == before, f"left behind: {sorted(set(after) - set(before))}"  # no model, no .part file
    assert raised.value.field == "url"
    return raised.value.message


@pytest.mark.parametrize("name", ["style.safetensors", "style.ckpt"])
def test_an_html_page_is_refused_as_a_model(tools: ModelTools, hostile_server: str, name: str) -> None:
    message = _refused(tools, f"{hostile_server}/html/{name}")
    assert "is a web page" in message and "nothing was installed" in message
    assert ".part" not in message and str(tools.folders("lora")[0]) not in message


@pytest.mark.parametrize("name", ["style.safetensors", "style.pt"])
def test_a_git_lfs_pointer_is_refused_as_a_model(tools: ModelTools, hostile_server: str, name: str) -> None:
    message = _refused(tools, f"{hostile_server}/lfs/{name}")
    assert "git-lfs pointer" in message and "nothing was installed" in message


def test_a_trickle_is_cut_off_by_the_minimum_rate(tools: ModelTools, hostile_server: str) -> None:
    message = _refused(tools, f"{hostile_server}/trickle/big.safetensors", "checkpoints")
    assert "too slow" in message and "minimum of 1024 bytes/s" in message


def test_a_server_that_goes_silent_is_cut_off_within_one_window(tools: ModelTools, hostile_server: str) -> None:
    message = _refused(tools, f"{hostile_server}/silent/big.safetensors", "checkpoints")
    assert "sent nothing for 0.5 s" in message


def test_a_download_that_would_never_end_stops_at_the_deadline(tools: ModelTools, hostile_server: str) -> None:
    message = _refused(tools, f"{hostile_server}/long/big.safetensors", "checkpoints")
    assert "longer than the 2-second limit" in message


def test_the_limits_have_one_home_and_refuse_nonsense() -> None:
    assert ModelTools.__init__.__defaults__ == (DownloadLimits(),)
    for bad in ({"deadline_s": 0}, {"min_rate_bytes_s": -1}, {"rate_window_s": float("nan")}):
        with pytest.raises(ValueError):
            DownloadLimits(**bad)
