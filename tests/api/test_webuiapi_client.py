"""``webuiapi`` (the A1111 client on PyPI), unmodified, against the live server: what its users
call first (wait for ready, models, options), generation, and an interrupt."""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlparse

import pytest
import webuiapi
from PIL import Image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(server_url: str) -> webuiapi.WebUIApi:
    address = urlparse(server_url)
    api = webuiapi.WebUIApi(host=address.hostname, port=address.port)
    api.util_wait_for_ready(check_interval=0.2)  # reads /progress state.job_count until 0
    return api


def test_start_up_calls_and_options_round_trip(client: webuiapi.WebUIApi) -> None:
    assert client.get_sd_models()[0]["model_name"] == "tiny-sd15"
    assert client.get_hypernetworks() == [] and {"Lanczos", "Nearest"} <= {u["name"] for u in client.get_upscalers()}
    options = client.get_options()
    assert options["send_seed"] is True and options["samples_format"] == "png"
    try:
        client.set_options({"send_seed": False})
        assert client.get_options()["send_seed"] is False
    finally:
        client.set_options({"send_seed": True})


def test_txt2img_img2img_and_extras(client: webuiapi.WebUIApi) -> None:
    result = client.txt2img(prompt="a red square", seed=5, steps=2, width=64, height=64, sampler_name="Euler a")
    assert result.image.size == (64, 64) and result.info["seed"] == 5 and result.info["warnings"] == []
    assert result.info["sd_model_name"] == "tiny-sd15" and "Seed: 5" in result.info["infotexts"][0]
    again = client.img2img(images=[result.image], prompt="a blue square", denoising_strength=0.5, steps=2,
                           seed=5, width=64, height=64)
    assert again.image.size == (64, 64)
    assert client.extra_single_image(image=result.image, upscaler_1="Nearest", upscaling_resize=2).image.size == \
        (128, 128)
    assert client.png_info(result.image).info.startswith("a red square")


def test_interrupt_returns_the_images_made(client: webuiapi.WebUIApi) -> None:
    answer: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: answer.update(result=client.txt2img(
        prompt="x", steps=150, n_iter=50, width=64, height=64, seed=1)))
    worker.start()
    deadline = time.monotonic() + 60
    while client.get_progress()["state"]["sampling_step"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    client.interrupt()
    worker.join(120)
    result = answer["result"]
    assert result.info["interrupted"] is True and 1 <= len(result.images) < 50
    assert all(isinstance(image, Image.Image) for image in result.images)
