"""Start the real web UI in a subprocess on a free port (for API and browser tests, and
bench/startup.py)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
POLL_SECONDS = 0.05


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, process: subprocess.Popen, log: Path, limit_s: float = 120.0) -> None:
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(POLL_SECONDS)
    raise TimeoutError(f"server not ready after {limit_s} s")


def launch_server(data_dir: Path, log_path: Path, *flags: str, env: Mapping[str, str] | None = None,
                  ready_s: float = 120.0, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """Start a server on ``data_dir`` (output to ``log_path``) and return it, ready, with its URL.
    The caller stops it (``terminate``, or ``kill`` to test a crash)."""
    port = port or _free_port()
    with log_path.open("ab") as log:  # the child keeps its own handle
        process = subprocess.Popen(
            [sys.executable, "webui.py", "--port", str(port), "--data-dir", str(data_dir), *flags],
            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_ready(url, process, log_path, ready_s)
    except BaseException:
        process.kill()
        raise
    return process, url


def start_server(data_dir: Path, *flags: str, log_path: Path | None = None,
                 env: Mapping[str, str] | None = None, ready_s: float = 120.0) -> Iterator[str]:
    """Yield the URL of a ready server (GET / answers 200) on ``data_dir``; stop it afterwards.

    The server's output goes to a file, not a pipe: nobody reads a pipe while it runs, and a
    full pipe would block the server. Pass ``log_path`` to read that file while it runs, and
    ``env`` for extra environment variables.
    """
    with contextlib.ExitStack() as stack:
        if log_path is None:
            log_path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aigen-server-"))) / "server.log"
        process, url = launch_server(data_dir, log_path, *flags, env=env, ready_s=ready_s)
        try:
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
