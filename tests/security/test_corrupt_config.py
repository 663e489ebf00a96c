"""A corrupt ``config.json``, against a live server: it starts on the default settings, says so
in ``/health`` (``config_error``) and to API clients (the ``X-AIGen-Config-Error`` header of
``GET /sdapi/v1/options``, whose body keeps A1111's flat shape), without naming a folder; and
the next settings write keeps the broken file as ``config.json.corrupt-<time>``, never losing it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modules.api.options_routes import CONFIG_ERROR_HEADER
from tests.security.conftest import PASSWORD, USER, write_data_dir
from tests.ui.live_server import start_server

BROKEN = b'{"eta_ddim": 0.4, "samples_format": "jpg",\n'  # a hand edit cut short: not valid JSON


@pytest.fixture(scope="module")
def broken_config_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = write_data_dir(tmp_path_factory.mktemp("corrupt-config-data"))
    (root / "config.json").write_bytes(BROKEN)
    for url in start_server(root, "--listen", "--gradio-auth", f"{USER}:{PASSWORD}"):
        yield url, root


@pytest.fixture(scope="module")
def client(broken_config_server: tuple[str, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=broken_config_server[0], auth=(USER, PASSWORD), timeout=120) as session:
        yield session


def test_health_and_the_options_api_report_the_corrupt_file_without_a_path(
        client: httpx.Client, broken_config_server: tuple[str, Path]) -> None:
    root = broken_config_server[1]
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    problem = health.json()["config_error"]
    assert problem.startswith("config.json is not valid JSON") and "default settings" in problem
    assert str(root) not in health.text and "/tmp/" not in problem
    options = client.get("/sdapi/v1/options")
    assert options.status_code == 200
    body = options.json()
    assert body["eta_ddim"] == 0.0 and body["samples_format"] == "png"  # the defaults in use, A1111's flat dict
    assert not [key for key in body if "config_error" in key]  # no key of ours that a client would post back
    assert options.headers[CONFIG_ERROR_HEADER].startswith("config.json is not valid JSON")
    assert str(root) not in options.headers[CONFIG_ERROR_HEADER]
    assert (root / "config.json").read_bytes() == BROKEN  # starting up did not touch it


def test_the_next_settings_write_keeps_the_broken_file_and_still_reports_it(
        client: httpx.Client, broken_config_server: tuple[str, Path]) -> None:
    root = broken_config_server[1]
    written = client.post("/sdapi/v1/options", json={"eta_ddim": 0.3})
    assert written.status_code == 200, written.text[:400]
    assert json.loads((root / "config.json").read_text(encoding="utf-8"))["eta_ddim"] == 0.3
    (copy,) = sorted(root.glob("config.json.corrupt-*"))
    assert copy.read_bytes() == BROKEN
    problem = client.get("/health").json()["config_error"]
    assert f"kept as {copy.name}" in problem and str(root) not in problem
    assert copy.name in client.get("/sdapi/v1/options").headers[CONFIG_ERROR_HEADER]
