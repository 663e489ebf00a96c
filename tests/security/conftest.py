"""One live server attacked as a hostile user would: reachable from the network (``--listen``)
behind a password (``--gradio-auth``), on a data dir with the tiny SD1.x checkpoint, a tiny
upscaler and a tiny ControlNet. Tests that would change what every other test sees (a lockout,
a default model chosen at start-up) start a server of their own with ``start_server``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.tiny_controlnet import write_tiny_controlnet
from tests.tiny_models import build_tiny_pipeline, write_tiny_checkpoint
from tests.ui.live_server import start_server
from tests.upscaler_files import write_tiny_upscaler

#: The user and password of the shared server (``--gradio-auth``; the API falls back on it).
USER, PASSWORD = "alice", "wonderland"
#: The tiny ControlNet in the server's models/ControlNet, and the tiny upscaler's name.
CONTROLNET, UPSCALER = "tiny-control-sd15", "2x-tiny"


def write_data_dir(root: Path) -> Path:
    """A data dir holding what the shared server serves (for tests that start their own)."""
    write_tiny_checkpoint(root / "models" / "Stable-diffusion", "sd15")
    write_tiny_upscaler(root / "models" / "ESRGAN" / f"{UPSCALER}.safetensors", scale=2)
    write_tiny_controlnet(root / "models" / "ControlNet" / CONTROLNET, build_tiny_pipeline("sd15").unet)
    return root


@pytest.fixture(scope="package")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_data_dir(tmp_path_factory.mktemp("secure-data"))


@pytest.fixture(scope="package")
def server_url(data_dir: Path) -> Iterator[str]:
    yield from start_server(data_dir, "--listen", "--gradio-auth", f"{USER}:{PASSWORD}")


@pytest.fixture(scope="package")
def api(server_url: str) -> Iterator[httpx.Client]:
    """A logged-in client of A1111's ``/sdapi/v1`` (HTTP Basic auth)."""
    with httpx.Client(base_url=server_url + "sdapi/v1", auth=(USER, PASSWORD), timeout=120) as client:
        yield client


@pytest.fixture(scope="package")
def jobs_api(server_url: str) -> Iterator[httpx.Client]:
    """A logged-in client of our ``/api/v1``."""
    with httpx.Client(base_url=server_url + "api/v1", auth=(USER, PASSWORD), timeout=120) as client:
        yield client


@pytest.fixture(scope="package")
def root_api(server_url: str) -> Iterator[httpx.Client]:
    """A logged-in client of the server's root (``/health``, ``/controlnet/...``, gradio's routes)."""
    with httpx.Client(base_url=server_url, auth=(USER, PASSWORD), timeout=120) as client:
        yield client


def assert_reveals_nothing(response: httpx.Response, *secrets: str) -> None:
    """An error answer holds no server path, no traceback and no terminal colour codes, nor any of ``secrets``
    (say, the data dir or the path a client tried)."""
    text = response.text
    for secret in secrets:
        assert secret not in text, f"{secret!r} leaked in {text[:400]!r}"
    assert "Traceback" not in text and "\x1b[" not in text and "\\u001b[" not in text, text[:400]
    assert "/tmp/" not in text and "site-packages" not in text, text[:400]
