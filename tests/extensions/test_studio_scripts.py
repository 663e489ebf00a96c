"""Scripts as users call them: request fields name scripts and arguments; bad ones are named back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from modules.extensions.job_scripts import describe_scripts
from modules.processing.errors import RequestValidationError
from modules.studio import Studio
from tests.studio_fixtures import BASE

HIGH_CFG = {"cfg_scale": 30, "steps": 3}
THRESHOLD = "Dynamic thresholding"


def test_the_example_extension_changes_the_image_only_when_enabled(generate: Callable) -> None:
    plain = generate(**HIGH_CFG)
    off = generate(**HIGH_CFG, alwayson_scripts={THRESHOLD: {"args": [False]}})
    on = generate(**HIGH_CFG, alwayson_scripts={THRESHOLD: {"args": [True, 99.0, 1.0]}})
    assert on.hook_errors == [] and off.images[0].tobytes() == plain.images[0].tobytes()
    assert on.images[0].tobytes() != plain.images[0].tobytes()


def test_named_and_positional_arguments_make_the_same_image(generate: Callable) -> None:
    positional = generate(**HIGH_CFG, alwayson_scripts={THRESHOLD: {"args": [True, 99.0, 1.0]}})
    named = generate(**HIGH_CFG, alwayson_scripts={THRESHOLD.lower(): {"args": {"enabled": True, "limit": 1.0,
                                                                                "percentile": 99.0}}})
    assert named.images[0].tobytes() == positional.images[0].tobytes()


@pytest.mark.parametrize(("fields", "field"), [
    ({"alwayson_scripts": {"Nope": {"args": []}}}, "alwayson_scripts.Nope"),
    ({"alwayson_scripts": {THRESHOLD: {"args": {"limit": 99}}}}, f"alwayson_scripts.{THRESHOLD}"),
    ({"alwayson_scripts": {THRESHOLD: {"args": "on"}}}, f"alwayson_scripts.{THRESHOLD}"),
    ({"alwayson_scripts": ["x"]}, "alwayson_scripts"),
    ({"script_name": "No such script"}, "script_name"),
    ({"script_name": "Prompt matrix", "script_args": {"margin": 3}}, "script_args"),
])
def test_bad_script_fields_are_refused_naming_the_field(studio: Studio, fields: dict, field: str) -> None:
    with pytest.raises(RequestValidationError) as refused:
        studio.submit_txt2img({**BASE, **fields})
    assert refused.value.field == field


def test_a_broken_user_script_does_not_stop_the_studio(data_dir: Path) -> None:
    import argparse

    from modules.app import build_app_context
    from modules.settings import SettingsStore

    (data_dir / "scripts").mkdir()
    (data_dir / "scripts" / "broken.py").write_text("this is not python(\n")
    args = argparse.Namespace(data_dir=data_dir, ckpt_dir=[], precision="fp32", no_half=False, device="cpu")
    context = build_app_context(args)
    assert any("broken.py: SyntaxError" in error for error in context.scripts.errors)
    service = Studio(context, SettingsStore(data_dir / "config.json"))
    try:
        status = service.wait(service.submit_txt2img(BASE), timeout=120)
        assert status.state == "done" and len(status.result.images) == 1
    finally:
        service.close()


def test_script_info_describes_every_script_and_argument(studio: Studio) -> None:
    info = {(e["name"], e["is_img2img"]): e for e in describe_scripts(studio.context.scripts)}
    threshold = info[(THRESHOLD.lower(), False)]
    assert threshold["is_alwayson"] and [a["name"] for a in threshold["args"]] == ["enabled", "percentile", "limit"]
    assert threshold["args"][2] == {"name": "limit", "label": "Keep x0 within ±", "value": 3.0, "minimum": 1.0,
                                    "maximum": 10.0, "step": 0.1, "choices": None, "kind": "slider"}
    assert not info[("prompt matrix", True)]["is_alwayson"]


def test_a_script_writes_its_infotext_and_reads_it_back(generate: Callable, studio: Studio) -> None:
    from modules.extensions.job_scripts import script_args_from_infotext
    from modules.processing.output.infotext import parse_infotext

    on = generate(**HIGH_CFG, alwayson_scripts={THRESHOLD: {"args": [True, 99.0, 1.5]}})
    off = generate(**HIGH_CFG)
    params = parse_infotext(on.infotexts[0])
    assert (params["Dynamic thresholding percentile"], params["Dynamic thresholding limit"]) == ("99", "1.5")
    assert "Dynamic thresholding" not in off.infotexts[0]
    pasted = script_args_from_infotext(studio.context.scripts, False, params)
    assert pasted == {THRESHOLD: {"enabled": True, "percentile": 99.0, "limit": 1.5}}
    again = generate(**HIGH_CFG, alwayson_scripts={THRESHOLD: {"args": pasted[THRESHOLD]}})
    assert again.images[0].tobytes() == on.images[0].tobytes()


def test_script_name_none_means_no_script(generate: Callable) -> None:
    assert len(generate(script_name="None").images) == 1


def test_extension_settings_are_declared_saved_validated_and_read_by_the_script(generate: Callable,
                                                                                studio: Studio) -> None:
    key = "dynamic_thresholding_min_sigma"
    assert key in studio.extension_settings() and studio.extension_setting_values()[key] == 0.0
    on = {**HIGH_CFG, "alwayson_scripts": {THRESHOLD: {"args": [True, 99.0, 1.0]}}}
    plain, thresholded = generate(**HIGH_CFG), generate(**on)
    assert studio.update_extension_settings({key: 500.0, "nope": 1}) == [
        f"{key}: 500.0 is outside 0.0..100.0", "nope: no extension declares this setting"]
    assert studio.update_extension_settings({key: 99.0}) == []
    assert studio.store.extra()[key] == 99.0 and studio.extension_setting_values()[key] == 99.0
    # Every sigma of the run is below 99: the script now leaves the image alone.
    assert generate(**on).images[0].tobytes() == plain.images[0].tobytes() != thresholded.images[0].tobytes()
