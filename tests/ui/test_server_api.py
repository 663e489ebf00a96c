"""The real server on a free port, driven through gradio_client: named endpoints, auth."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.tiny_models import write_tiny_checkpoint
from tests.ui.live_server import start_server

pytestmark = pytest.mark.slow
NAMED = ("/txt2img", "/img2img", "/inpaint", "/png_info", "/prompt_preview",
         "/interrupt", "/skip", "/progress", "/refresh_checkpoints", "/set_checkpoint")


HELLO_EXTENSION = """
import gradio as gr

from modules.extensions.api import register_callback


def started(demo, app):
    @app.get("/hello-extension")
    def hello():
        return {"hello": "extension", "has_page": demo is not None}


def tabs():
    with gr.Blocks() as block:
        gr.Markdown("Hello from an extension", elem_id="hello_extension_text")
    return [(block, "Hello", "hello_tab")]


register_callback("on_app_started", started)
register_callback("on_ui_tabs", tabs)
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("server-data")
    write_tiny_checkpoint(root / "models" / "Stable-diffusion", "sd15")
    scripts = root / "extensions" / "hello" / "scripts"
    scripts.mkdir(parents=True)
    (scripts.parent / "extension.json").write_text('{"name": "hello", "version": "0.1"}')
    (scripts / "hello.py").write_text(HELLO_EXTENSION)
    return root


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[str]:
    yield from start_server(data_dir)


def test_named_endpoints_are_listed_and_plumbing_is_hidden(server: str) -> None:
    from gradio_client import Client

    api = Client(server, verbose=False).view_api(print_info=False, return_format="dict")
    named = set(api["named_endpoints"])
    assert set(NAMED) <= named, named
    assert not api["unnamed_endpoints"]
    assert named == set(NAMED), f"internal handlers leak into the API: {named - set(NAMED)}"
    params = [p["parameter_name"] for p in api["named_endpoints"]["/txt2img"]["parameters"]]
    assert {"prompt", "negative_prompt", "steps", "sampler_name", "scheduler", "cfg_scale", "seed", "width",
            "height", "batch_size", "n_iter"} <= set(params)
    for name in ("/img2img", "/inpaint"):  # the same named A1111 arguments, plus the image ones
        own = {p["parameter_name"] for p in api["named_endpoints"][name]["parameters"]}
        assert set(params) <= own and {"image", "denoising_strength", "resize_mode"} <= own
    for name in ("/txt2img", "/img2img", "/inpaint"):  # last, so positional calls keep their meaning
        assert api["named_endpoints"][name]["parameters"][-1]["parameter_name"] == "distilled_cfg_scale"


def test_txt2img_through_gradio_client(server: str) -> None:
    from gradio_client import Client

    client = Client(server, verbose=False)
    result = client.predict(prompt="a red circle", steps=2, width=64, height=64, seed=3, batch_size=2,
                            sampler_name="Euler a", api_name="/txt2img")
    # As in the UI's gallery, a batch starts with its grid (it carries the first image's seed).
    assert result["seeds"] == [3, 3, 4] and result["index_of_first_image"] == 1
    grid = Image.open(io.BytesIO(base64.b64decode(result["images"][0])))
    image = Image.open(io.BytesIO(base64.b64decode(result["images"][2])))
    assert grid.size == (128, 64) and image.size == (64, 64) and "Seed: 4" in image.info["parameters"]
    info = client.predict(image=result["images"][1], api_name="/png_info")
    assert info["parameters"]["Seed"] == "3" and info["parameters"]["Steps"] == "2"
    assert client.predict(api_name="/progress")["state"] == "idle"
    plan = client.predict(prompt="a [red:blue:0.5] cat", steps=10, api_name="/prompt_preview")
    assert [s["until_step"] for s in plan["sub_prompts"][0]["schedule"]] == [5, 10]
    assert client.predict(api_name="/interrupt") is False
    titles = client.predict(api_name="/refresh_checkpoints")
    assert titles and titles[0].startswith("tiny-sd15.safetensors")
    chosen = client.predict(title="tiny-sd15", api_name="/set_checkpoint")
    assert chosen.startswith("tiny-sd15.safetensors [") and len(chosen.split("[")[1]) == 11


def test_bad_input_is_a_clear_error_and_the_server_survives(server: str) -> None:
    from gradio_client import Client

    client = Client(server, verbose=False)
    with pytest.raises(Exception, match="steps"):
        client.predict(prompt="x", steps=0, width=64, height=64, api_name="/txt2img")
    with pytest.raises(Exception, match="sampler_name"):
        client.predict(prompt="x", steps=1, width=64, height=64, sampler_name="Nope", api_name="/txt2img")
    with pytest.raises(Exception, match="image"):
        client.predict(image="not base64!!", api_name="/png_info")
    with pytest.raises(Exception, match="distilled_cfg_scale"):
        client.predict(prompt="x", steps=1, width=64, height=64, distilled_cfg_scale=31, api_name="/txt2img")
    result = client.predict(prompt="x", steps=1, width=64, height=64, seed=1, distilled_cfg_scale=2.5,
                            api_name="/txt2img")
    # accepted, and dropped by an SD model, which has no distilled guidance (FLUX.1 records it)
    assert result["seeds"] == [1] and "Distilled CFG Scale" not in result["infotexts"][0]
    assert client.predict(prompt="x", steps=1, width=64, height=64, seed=1, api_name="/txt2img")["seeds"] == [1]


def test_auth_protects_page_and_api(data_dir: Path) -> None:
    from gradio_client import Client

    for url in start_server(data_dir, "--gradio-auth", "alice:secret"):
        client = Client(url, auth=("alice", "secret"), verbose=False)
        result = client.predict(prompt="x", steps=1, width=64, height=64, seed=8, api_name="/txt2img")
        assert result["seeds"] == [8]
        with pytest.raises(Exception):  # noqa: B017 - gradio_client raises a plain ValueError here
            Client(url, auth=("alice", "wrong"), verbose=False)
        with pytest.raises(Exception):  # noqa: B017
            Client(url, verbose=False).predict(prompt="x", steps=1, api_name="/txt2img")


def _b64_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_img2img_and_inpaint_through_gradio_client(server: str) -> None:
    from gradio_client import Client

    client = Client(server, verbose=False)
    source = Image.new("RGB", (64, 64), (30, 160, 90))
    result = client.predict(image=_b64_png(source), prompt="a red circle", denoising_strength=0.5, steps=2,
                            width=64, height=64, seed=6, subseed=9, subseed_strength=0.5, sampler_name="Euler a",
                            api_name="/img2img")
    image = Image.open(io.BytesIO(base64.b64decode(result["images"][0])))
    assert result["seeds"] == [6] and "Denoising strength: 0.5" in image.info["parameters"]
    assert "Variation seed: 9, Variation seed strength: 0.5" in image.info["parameters"]
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    result = client.predict(image=_b64_png(source), mask=_b64_png(mask), prompt="x", denoising_strength=1.0,
                            mask_blur=0, steps=2, width=64, height=64, seed=6, api_name="/inpaint")
    image = Image.open(io.BytesIO(base64.b64decode(result["images"][0])))
    assert image.getpixel((60, 30)) == (30, 160, 90)  # right half: not masked, the input's own pixels
    assert "Mask blur: 0" in image.info["parameters"]
    empty = client.predict(image=_b64_png(source), mask=_b64_png(Image.new("L", (64, 64))), steps=2, width=64,
                           height=64, api_name="/inpaint")
    assert empty["notices"] and "empty" in empty["notices"][0]
    with pytest.raises(Exception, match="mask"):
        client.predict(image=_b64_png(source), mask="nope", api_name="/inpaint")


def test_scripts_take_the_same_call_from_rest_gradio_client_and_the_ui_form(server: str, data_dir: Path) -> None:
    """One always-on script call, by argument name, through the three ways in: the same image."""
    import httpx
    from gradio_client import Client

    from modules.ui.script_controls import ScriptControls, script_payload

    common = {"prompt": "a red circle", "steps": 3, "width": 64, "height": 64, "seed": 8, "cfg_scale": 30,
              "sampler_name": "Euler"}
    args = {"enabled": True, "percentile": 99.0, "limit": 1.0}
    rest = httpx.post(server + "sdapi/v1/txt2img", timeout=120,
                      json={**common, "alwayson_scripts": {"Dynamic thresholding": {"args": args}}}).json()
    client = Client(server, verbose=False)
    gradio = client.predict(**common, alwayson_scripts={"Dynamic thresholding": {"args": args}}, api_name="/txt2img")
    # The web form's values: each control keyed script::<title>::<argument>.
    form_values = {**common, **{f"script::Dynamic thresholding::{k}": v for k, v in args.items()}}
    form = script_payload(form_values, ScriptControls(always_on=["Dynamic thresholding"]))
    plain = client.predict(**common, api_name="/txt2img")
    by_form = client.predict(**common, alwayson_scripts=form["alwayson_scripts"], api_name="/txt2img")

    def pixels(data: str) -> bytes:
        return Image.open(io.BytesIO(base64.b64decode(data))).tobytes()

    assert pixels(rest["images"][0]) == pixels(gradio["images"][0]) == pixels(by_form["images"][0])
    assert pixels(gradio["images"][0]) != pixels(plain["images"][0])
    info = httpx.get(server + "sdapi/v1/script-info", timeout=30).json()
    assert {"dynamic thresholding", "x/y/z plot", "prompt matrix"} <= {e["name"] for e in info}
    assert "x/y/z plot" in httpx.get(server + "sdapi/v1/scripts", timeout=30).json()["txt2img"]


def test_extensions_add_routes_and_tabs_when_the_app_starts(server: str) -> None:
    import httpx

    assert httpx.get(server + "hello-extension", timeout=30).json() == {"hello": "extension", "has_page": True}
    config = httpx.get(server + "config", timeout=30).json()
    labels = {c.get("props", {}).get("label") for c in config["components"]}
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert "Hello" in labels and "hello_extension_text" in ids
