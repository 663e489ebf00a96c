"""Offline by construction: loading a checkpoint and generating never touch the network.

A ``sys.addaudithook`` hook watches ``socket.connect`` and ``socket.getaddrinfo``. Audit hooks
cannot be removed, so the hook is installed once per process and does nothing unless a test
switches it on with ``NETWORK_GUARD.blocking()``; while on, it records every attempt to reach a
non-loopback address and raises before the socket call runs, so no packet is ever sent.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modules.models.hashing import HashCache
from modules.models.loader import LoadedModel
from modules.models.manager import ModelManager
from modules.models.registry import CheckpointRegistry
from modules.processing.generation.txt2img import OutputOptions, run_txt2img
from modules.processing.jobs.job import Job
from modules.processing.requests import Txt2ImgRequest
from tests.conftest import CPU_FP32
from tests.tiny_models import write_tiny_checkpoint

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


class NetworkBlockedError(RuntimeError):
    """Raised by the audit hook instead of letting a socket reach a non-loopback address."""


def _host_of(event: str, args: tuple[Any, ...]) -> object:
    """The host an audited socket call is aimed at (None when it names none)."""
    if event == "socket.getaddrinfo":
        return args[0]
    address = args[1]  # socket.connect: (socket, address)
    if isinstance(address, tuple) and address:
        return address[0]
    return None  # AF_UNIX paths and other local address families


def is_loopback(host: object) -> bool:
    """Whether ``host`` (a name, an IP address, or None) stays on this machine."""
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host.lower().rstrip(".") in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class NetworkGuard:
    """A switchable audit hook that blocks and records non-loopback socket use."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, str]] = []
        self._enabled = False
        self._installed = False
        self._lock = threading.Lock()

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self._enabled or event not in ("socket.connect", "socket.getaddrinfo"):
            return
        host = _host_of(event, args)
        if is_loopback(host):
            return
        with self._lock:
            self.attempts.append((event, repr(host)))
        raise NetworkBlockedError(f"network use during an offline test: {event} to {host!r}")

    @contextmanager
    def blocking(self) -> Iterator[list[tuple[str, str]]]:
        """Block and record non-loopback socket use inside the block; yields the record."""
        if not self._installed:
            sys.addaudithook(self._hook)
            self._installed = True
        self.attempts = []
        self._enabled = True
        try:
            yield self.attempts
        finally:
            self._enabled = False


NETWORK_GUARD = NetworkGuard()


def test_guard_blocks_before_connecting_and_lets_loopback_through() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server, NETWORK_GUARD.blocking() as attempts:
        with socket.create_connection(server.getsockname(), timeout=2):
            pass
        assert attempts == []  # loopback is fine

        with pytest.raises(NetworkBlockedError):
            socket.getaddrinfo("example.com", 443)
        with pytest.raises(NetworkBlockedError):
            socket.create_connection(("10.255.255.1", 9), timeout=0.5)
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.settimeout(0.5)
        try:
            with pytest.raises(NetworkBlockedError):
                raw.connect(("10.255.255.1", 9))
            with pytest.raises(OSError):
                raw.getpeername()  # never connected: the hook ran before the connect call
        finally:
            raw.close()

    assert attempts == [
        ("socket.getaddrinfo", "'example.com'"),
        ("socket.getaddrinfo", "'10.255.255.1'"),
        ("socket.connect", "'10.255.255.1'"),
    ]
    # Switched off outside the block: only the record of the block is kept.
    assert not NETWORK_GUARD._enabled


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_loading_a_checkpoint_from_disk_makes_no_network_attempt(family: str, tmp_path: Path) -> None:
    write_tiny_checkpoint(tmp_path, family, name=f"fresh-{family}", seed=3)
    with NETWORK_GUARD.blocking() as attempts:
        registry = CheckpointRegistry([tmp_path], HashCache(tmp_path / "hashes.json"))
        model = ModelManager(registry, CPU_FP32).get(f"fresh-{family}")
        result = run_txt2img(model, Job(Txt2ImgRequest(prompt="a cube", width=64, height=64,
                                                       num_inference_steps=1, seed=1)))
    assert attempts == []
    assert model.short_hash is not None and (model.family.base == "sdxl") == (family == "sdxl")
    assert result.images[0].size == (64, 64)


def test_full_generation_makes_no_network_attempt(sd15_model: LoadedModel, tmp_path: Path) -> None:
    request = Txt2ImgRequest(prompt="a red circle", negative_prompt="blue", width=64, height=64,
                             num_inference_steps=3, sampler_name="DPM++ 2M", seed=11, batch_size=2)
    with NETWORK_GUARD.blocking() as attempts:
        result = run_txt2img(sd15_model, Job(request), OutputOptions(tmp_path / "txt2img-images"))
    assert attempts == []
    assert result.seeds == [11, 12] and not result.interrupted and result.hook_errors == []
    assert [p.is_file() for p in result.paths] == [True, True]
    pixels = np.asarray(result.images[0])
    assert pixels.shape == (64, 64, 3) and pixels.std() > 0
