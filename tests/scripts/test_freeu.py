"""FreeU through the studio, as the REST API selects it: it changes the image on SD1.x and
SDXL with each family's recommended values, leaves the shared model as it was, and its
infotext pastes back to the same image."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from modules.extensions.job_scripts import script_args_from_infotext
from modules.processing.output.infotext import parse_infotext
from modules.studio import Studio
from tests.scripts.patch_fixtures import MODELS, data_dir, shared_unet, unet_state

__all__ = ["data_dir"]

FREEU = "FreeU"


@pytest.mark.parametrize(("model", "b1"), [("tiny-sd15", "1.5"), ("tiny-sdxl", "1.3")])
def test_freeu_changes_the_image_with_the_familys_values_and_not_the_shared_model(
        generate: Callable, studio: Studio, model: str, b1: str) -> None:
    plain = generate(**MODELS[model])
    before = unet_state(shared_unet(studio, model))
    on = generate(**MODELS[model], alwayson_scripts={FREEU: {"args": {"enabled": True}}})
    assert on.hook_errors == []
    assert on.images[0].tobytes() != plain.images[0].tobytes()
    params = parse_infotext(on.infotexts[0])
    assert (params["freeu_enabled"], params["freeu_b1"], params["freeu_s2"]) == ("True", b1, "0.2")
    assert unet_state(shared_unet(studio, model)) == before
    assert generate(**MODELS[model]).images[0].tobytes() == plain.images[0].tobytes()
    assert "freeu" not in plain.infotexts[0]


def test_freeu_infotext_pastes_back_to_the_same_image(generate: Callable, studio: Studio) -> None:
    args = {"enabled": True, "preset": "Custom", "b1": 1.2, "b2": 1.1, "s1": 0.8, "s2": 0.5}
    on = generate(**MODELS["tiny-sdxl"], alwayson_scripts={FREEU: {"args": args}})
    pasted = script_args_from_infotext(studio.context.scripts, False, parse_infotext(on.infotexts[0]))
    assert pasted[FREEU] == args
    again = generate(**MODELS["tiny-sdxl"], alwayson_scripts={FREEU: {"args": pasted[FREEU]}})
    assert again.images[0].tobytes() == on.images[0].tobytes()


def test_forge_positional_arguments_are_its_own_values(generate: Callable) -> None:
    forge = generate(alwayson_scripts={FREEU: {"args": [True, 1.5, 1.6, 0.9, 0.2, 0.0, 1.0]}})
    named = generate(alwayson_scripts={FREEU: {"args": {"enabled": True, "preset": "SD 1.x"}}})
    assert forge.images[0].tobytes() == named.images[0].tobytes()
    assert parse_infotext(forge.infotexts[0])["freeu_preset"] == "Custom"


def test_freeu_works_in_img2img_and_the_hires_pass(generate: Callable) -> None:
    source = generate().images[0]
    img2img = {"init_images": [source], "denoising_strength": 0.6}
    assert generate(**img2img, alwayson_scripts={FREEU: {"args": [True]}}).images[0].tobytes() != \
        generate(**img2img).images[0].tobytes()
    hires = {"enable_hr": True, "hr_scale": 1.5, "hr_second_pass_steps": 2, "hr_upscaler": "Latent"}
    assert generate(**hires, alwayson_scripts={FREEU: {"args": [True]}}).images[0].tobytes() != \
        generate(**hires).images[0].tobytes()
