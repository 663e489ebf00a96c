"""Slow clients against a live server: sockets that send half a request and stall are closed
after the head deadline, a stalled body after its idle timeout, the server answers others
meanwhile, and past the connection cap new connections are refused instead of piling up.

The server runs with small limits (``AIGEN_TEST_LIMITS``), so the counts stay modest."""

from __future__ import annotations

import json
import os
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from modules.server import TEST_LIMITS_ENV
from tests.security.conftest import write_data_dir
from tests.ui.live_server import REPO_ROOT, _free_port, start_server

pytestmark = pytest.mark.slow
LIMITS = {"head_timeout_s": 4, "body_idle_s": 4, "max_connections": 60}
HALF_HEAD = b"GET /sdapi/v1/sd-models HTTP/1.1\r\nHost: x\r\nUser-Agent: slow"  # no blank line: never ends
GRACE_S = 30  # how long the test waits for the server to close them (far more than the deadline)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_data_dir(tmp_path_factory.mktemp("connections-data"))


@pytest.fixture(scope="module")
def url(data: Path) -> Iterator[str]:
    yield from start_server(data, env={TEST_LIMITS_ENV: json.dumps(LIMITS)})


def _stall(url: str, count: int, payload: bytes = HALF_HEAD) -> list[socket.socket]:
    address = urlparse(url)
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((address.hostname, address.port), timeout=10)
        try:
            sock.sendall(payload)
        except OSError:  # closed at once (over the cap): still a socket the test tracks
            pass
        sockets.append(sock)
    return sockets


def _wait_all_closed(sockets: list[socket.socket]) -> int:
    """Wait (up to GRACE_S) until the server has closed every socket; returns how many it closed."""
    selector = selectors.DefaultSelector()
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    closed, deadline = 0, time.monotonic() + GRACE_S
    while closed < len(sockets) and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1):
            try:
                data = key.fileobj.recv(4096)  # type: ignore[union-attr]
            except (ConnectionResetError, BlockingIOError):
                data = b""
            if not data:
                selector.unregister(key.fileobj)
                closed += 1
    selector.close()
    for sock in sockets:
        sock.close()
    return closed


def _answers(url: str) -> bool:
    """Whether a normal request on a new connection gets its answer."""
    try:
        return httpx.get(url + "sdapi/v1/sd-models", timeout=10).status_code == 200
    except httpx.TransportError:
        return False


def test_half_sent_requests_are_closed_and_others_are_served_meanwhile(url: str) -> None:
    stalled = _stall(url, 40)
    assert _answers(url), "a normal request must be answered while slow clients hold sockets"
    assert _wait_all_closed(stalled) == 40
    assert _answers(url)


def test_past_the_cap_new_connections_are_refused_until_the_stalled_ones_time_out(url: str) -> None:
    stalled = _stall(url, LIMITS["max_connections"] + 20)
    assert not _answers(url), "a connection over the cap must be closed (or answered 503), not queued"
    assert _wait_all_closed(stalled) == len(stalled)
    assert _answers(url)


def test_a_body_that_stops_arriving_is_dropped(url: str) -> None:
    head = (b"POST /sdapi/v1/png-info HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n")
    stalled = _stall(url, 5, head + b'{"image": "')
    assert _answers(url)
    assert _wait_all_closed(stalled) == 5


def _api_only_server(data: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """``--nowebui`` has no page for ``start_server`` to wait for: wait for the API instead."""
    port = _free_port()
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "webui.py", "--nowebui", "--port", str(port), "--data-dir",
                                    str(data)], cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "HF_HUB_OFFLINE": "1", TEST_LIMITS_ENV: json.dumps(LIMITS)})
    api_url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + 120
    while not _answers(api_url):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(log.read_text(errors="replace"))
        time.sleep(0.1)
    return process, api_url


def test_an_api_only_server_has_the_same_limits(data: Path, tmp_path: Path) -> None:
    process, api_url = _api_only_server(data, tmp_path / "server.log")
    try:
        stalled = _stall(api_url, 10)
        assert _answers(api_url)
        assert _wait_all_closed(stalled) == 10
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_silent_sockets_and_a_trickled_head_on_a_kept_alive_connection_are_closed(url: str) -> None:
    silent = _stall(url, 10, b"")  # connect, send nothing
    address = urlparse(url)
    kept = socket.create_connection((address.hostname, address.port), timeout=10)
    kept.sendall(b"GET /sdapi/v1/sd-models HTTP/1.1\r\nHost: x\r\n\r\n")
    assert kept.recv(65536).startswith(b"HTTP/1.1 200")
    kept.settimeout(0.5)
    closed, deadline = False, time.monotonic() + GRACE_S
    while True:  # one byte of the next head every half second (each recv waits that long)
        try:
            kept.sendall(HALF_HEAD[:1])
            closed = kept.recv(65536) == b""
        except TimeoutError:
            pass
        except OSError:
            closed = True
        if closed or time.monotonic() > deadline:
            break
    kept.close()
    assert closed, "a head trickled byte by byte must not hold the connection past the deadline"
    assert _wait_all_closed(silent) == 10
