"""Models kept on another disk and linked into the model folders (a linked folder, a linked
file, a link loop) are listed by the real HTTP routes after a refresh and can be generated with.

Runs on the package's shared live server: every name made here is unique and every link is
removed at the end (and the lists refreshed), so the other tests see the server as it was."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from safetensors.torch import save_file

from modules.models.ldm_export import vae_to_ldm
from tests.network_files import kohya_lora, write_lora
from tests.tiny_models import build_tiny_pipeline, write_tiny_checkpoint
from tests.upscaler_files import write_tiny_upscaler

pytestmark = pytest.mark.slow

_REFRESH = ("/refresh-checkpoints", "/refresh-loras", "/refresh-vae")


@pytest.fixture
def linked(api: httpx.Client, data_dir: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Per kind, a folder outside ``data_dir`` ("the other disk") linked into its model folder
    under a unique name, holding one tiny model and a loop link back to the model folder;
    plus one linked single file. Yields the names; removes the links afterwards."""
    tag = secrets.token_hex(4)
    models, disk = data_dir / "models", tmp_path / "disk"
    pipeline = build_tiny_pipeline("sd15", seed=3)
    names = {"link": f"linked-{tag}", "checkpoint": f"ckpt-{tag}", "lora": f"lora-{tag}", "vae": f"vae-{tag}",
             "upscaler": f"up-{tag}", "single": f"single-{tag}"}
    write_tiny_checkpoint(disk / "Stable-diffusion", "sd15", name=names["checkpoint"], seed=3)
    write_lora(disk / "Lora" / f"{names['lora']}.safetensors", kohya_lora(pipeline, scale=0.5))
    (disk / "VAE").mkdir(parents=True)
    save_file(vae_to_ldm(pipeline.vae.state_dict(), pipeline.vae.config, prefix=""),
              str(disk / "VAE" / f"{names['vae']}.safetensors"))
    write_tiny_upscaler(disk / "ESRGAN" / f"{names['upscaler']}.safetensors", scale=2)
    write_lora(disk / "single.safetensors", kohya_lora(pipeline, scale=0.2))
    links = []
    for kind in ("Stable-diffusion", "Lora", "VAE", "ESRGAN"):
        (disk / kind / "loop").symlink_to(models / kind, target_is_directory=True)  # back to an ancestor
        links.append(models / kind / names["link"])
        links[-1].parent.mkdir(parents=True, exist_ok=True)
        links[-1].symlink_to(disk / kind, target_is_directory=True)
    links.append(models / "Lora" / f"{names['single']}.safetensors")
    links[-1].symlink_to(disk / "single.safetensors")
    try:
        yield names
    finally:
        for link in links:
            link.unlink()
        for route in _REFRESH:
            api.post(route)


def test_linked_models_are_listed_once_after_refresh(api: httpx.Client, data_dir: Path,
                                                     linked: dict[str, str]) -> None:
    for route in _REFRESH:
        response = api.post(route)
        assert response.status_code == 200, (route, response.text)
    link = linked["link"]

    checkpoints = [m for m in api.get("/sd-models").json() if linked["checkpoint"] in m["title"]]
    assert [m["title"].split(" [")[0] for m in checkpoints] == [f"{link}/{linked['checkpoint']}.safetensors"]
    expected = data_dir / "models" / "Stable-diffusion" / link / f"{linked['checkpoint']}.safetensors"
    assert checkpoints[0]["filename"] == str(expected)  # the link's path, not the other disk's
    assert not any("/loop/" in m["title"] for m in api.get("/sd-models").json())

    loras = {lora["path"]: lora["name"] for lora in api.get("/loras").json()}
    lora_path = data_dir / "models" / "Lora" / link / f"{linked['lora']}.safetensors"
    assert loras.get(str(lora_path)) == linked["lora"]
    assert loras.get(str(data_dir / "models" / "Lora" / f"{linked['single']}.safetensors")) == linked["single"]
    assert sum(name == linked["lora"] for name in loras.values()) == 1  # the loop did not list it again

    vaes = [v for v in api.get("/sd-vae").json() if v["model_name"].startswith(linked["vae"])]
    assert vaes == [{"model_name": f"{linked['vae']}.safetensors",
                     "filename": str(data_dir / "models" / "VAE" / link / f"{linked['vae']}.safetensors")}]

    upscalers = [u["name"] for u in api.get("/upscalers").json()]
    assert upscalers.count(linked["upscaler"]) == 1


def test_generating_with_a_linked_checkpoint_lora_and_vae(api: httpx.Client, linked: dict[str, str]) -> None:
    for route in _REFRESH:
        assert api.post(route).status_code == 200
    link = linked["link"]
    payload = {"prompt": "a cat", "steps": 1, "width": 64, "height": 64, "seed": 7}
    plain = api.post("/txt2img", json=payload)
    assert plain.status_code == 200, plain.text
    overrides = {"sd_model_checkpoint": f"{link}/{linked['checkpoint']}", "sd_vae": f"{linked['vae']}.safetensors"}
    response = api.post("/txt2img", json={**payload, "prompt": f"a cat <lora:{link}/{linked['lora']}:0.8>",
                                          "override_settings": overrides})
    assert response.status_code == 200, response.text
    body = response.json()
    info = json.loads(body["info"])
    assert linked["checkpoint"] in info["sd_model_name"]
    assert info["sd_vae_name"] == f"{linked['vae']}.safetensors"
    assert "Lora hashes: " in info["infotexts"][0] and linked["lora"] in info["infotexts"][0]
    assert body["images"][0] != plain.json()["images"][0]
