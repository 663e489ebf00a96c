"""One live server for the API tests of this package (starting one takes seconds): a data dir
with the tiny SD1.x checkpoint, a tiny upscaler and a tiny ControlNet, and clients for its two APIs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.tiny_controlnet import write_tiny_controlnet
from tests.tiny_models import build_tiny_pipeline, write_tiny_checkpoint
from tests.ui.live_server import start_server
from tests.upscaler_files import write_tiny_upscaler

#: The tiny ControlNet in the server's models/ControlNet.
CONTROLNET = "tiny-control-sd15"


@pytest.fixture(scope="package")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rest-data")
    write_tiny_checkpoint(root / "models" / "Stable-diffusion", "sd15")
    write_tiny_upscaler(root / "models" / "ESRGAN" / "2x-tiny.safetensors", scale=2)
    write_tiny_controlnet(root / "models" / "ControlNet" / CONTROLNET, build_tiny_pipeline("sd15").unet)
    return root


@pytest.fixture(scope="package")
def server_url(data_dir: Path) -> Iterator[str]:
    yield from start_server(data_dir)


@pytest.fixture(scope="package")
def api(server_url: str) -> Iterator[httpx.Client]:
    """A client of A1111's ``/sdapi/v1``."""
    with httpx.Client(base_url=server_url + "sdapi/v1", timeout=120) as client:
        yield client


@pytest.fixture(scope="package")
def jobs_api(server_url: str) -> Iterator[httpx.Client]:
    """A client of our ``/api/v1``."""
    with httpx.Client(base_url=server_url + "api/v1", timeout=120) as client:
        yield client
