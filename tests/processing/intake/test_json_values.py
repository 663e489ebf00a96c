"""Values JSON allows but no field can hold: refused by name wherever they sit in a payload."""

from __future__ import annotations

import json

import pytest

from modules.processing.errors import RequestValidationError
from modules.processing.intake.json_values import check_json_values


@pytest.mark.parametrize(("body", "field"), [
    ('{"prompt": "a \\ud800 cat"}', "prompt"),
    ('{"negative_prompt": "\\udfff"}', "negative_prompt"),
    ('{"styles": ["ok", "\\ud800"]}', "styles.1"),
    ('{"alwayson_scripts": {"ControlNet": {"args": [{"module": "\\ud83d"}]}}}',
     "alwayson_scripts.ControlNet.args.0.module"),
    ('{"denoising_strength": NaN}', "denoising_strength"),
    ('{"cfg_scale": Infinity}', "cfg_scale"),
    ('{"override_settings": {"eta_ddim": -Infinity}}', "override_settings.eta_ddim"),
])
def test_a_lone_surrogate_or_a_non_finite_number_is_refused_naming_the_field(body: str, field: str) -> None:
    with pytest.raises(RequestValidationError) as caught:
        check_json_values(json.loads(body))
    assert caught.value.field == field


def test_a_bad_key_is_named_escaped_and_prefixes_apply() -> None:
    with pytest.raises(RequestValidationError) as caught:
        check_json_values(json.loads('{"x\\ud800": 1}'), "payload")
    assert caught.value.field == "payload.x\\ud800"
    str(caught.value).encode("utf-8")  # the message itself can be written out


def test_valid_unicode_and_finite_numbers_pass() -> None:
    check_json_values(json.loads('{"prompt": "caf\\u00e9 \\ud83d\\ude00", "cfg_scale": 7.5, "x": [null, true]}'))
