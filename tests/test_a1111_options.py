"""The table of A1111 1.10.1 option keys and defaults that ``/sdapi/v1/options`` serves."""

from __future__ import annotations

import json

import pytest

from modules.a1111_options import (
    A1111_API_RESTRICTED_OPTIONS,
    A1111_OPTION_DEFAULTS,
    A1111_RESTRICTED_OPTIONS,
    a1111_option_defaults,
)

# A sample of A1111 1.10.1 defaults, from its modules/shared_options.py and built-in extensions.
A1111_SAMPLE = {
    "samples_format": "png",
    "send_seed": True,
    "eta_noise_seed_delta": 0,
    "randn_source": "GPU",
    "jpeg_quality": 80,
    "CLIP_stop_at_last_layers": 1,
    "emphasis": "Original",
    "sd_vae": "Automatic",
    "show_progress_every_n_steps": 10,
    "quicksettings_list": ["sd_model_checkpoint"],
    "sd_model_checkpoint": None,
    "upscaler_for_img2img": None,
    "localization": "None",
    "cross_attention_optimization": "Automatic",
    "realesrgan_enabled_models": ["R-ESRGAN 4x+", "R-ESRGAN 4x+ Anime6B"],
    "outdir_txt2img_samples": "outputs/txt2img-images",
    "outdir_save": "log/images",
    "img_downscale_threshold": 4.0,
    "eta_ancestral": 1.0,
    "show_progress_type": "Approx NN",
    "live_previews_image_format": "png",
    "sd3_enable_t5": False,
    "sd_noise_schedule": "Default",
    "beta_dist_alpha": 0.6,
    "keyedit_delimiters": ".,\\/!?%^*;:{}=`~() ",
    "disable_all_extensions": "none",
    "enable_prompt_comments": True,
    # built-in extensions
    "sd_lora": "None",
    "lora_preferred_name": "Alias from file",
    "lora_add_hashes_to_infotext": True,
    "lora_show_all": False,
    "lora_hide_unknown_for_versions": [],
    "lora_in_memory_limit": 0,
    "lora_not_found_warning_console": False,
    "lora_not_found_gradio_warning": False,
    "lora_functional": False,
    "extra_options_txt2img": [],
    "extra_options_img2img": [],
    "extra_options_cols": 1,
    "extra_options_accordion": False,
    "hypertile_enable_unet": False,
    "hypertile_max_tile_vae": 128,
    "canvas_hotkey_zoom": "Alt",
    "canvas_disabled_functions": ["Overlap"],
    "SCUNET_tile": 256,
    "SWIN_tile": 192,
    "ldsr_steps": 100,
}


def test_table_holds_every_a1111_option() -> None:
    assert len(A1111_OPTION_DEFAULTS) > 250
    assert len(a1111_option_defaults()) == len(A1111_OPTION_DEFAULTS)


@pytest.mark.parametrize(("key", "default"), sorted(A1111_SAMPLE.items()))
def test_sample_defaults_are_a1111s(key: str, default: object) -> None:
    value = a1111_option_defaults()[key]
    assert value == default
    assert type(value) is type(default)  # 80 not 80.0, a list not a tuple


def test_explanation_texts_are_not_options() -> None:
    for key in ("sd_vae_explanation", "profiling_explanation", "infotext_explanation", "settings_in_ui",
                "hypertile_explanation"):
        assert key not in A1111_OPTION_DEFAULTS


def test_defaults_are_json_literals() -> None:
    defaults = a1111_option_defaults()
    assert json.loads(json.dumps(defaults)) == defaults
    scalars = (str, bool, int, float, type(None))
    for key, value in defaults.items():
        assert isinstance(value, (*scalars, list)), key
        if isinstance(value, list):
            assert all(isinstance(item, str) for item in value), key


def test_table_is_read_only_and_each_copy_fresh() -> None:
    with pytest.raises(TypeError):
        A1111_OPTION_DEFAULTS["send_seed"] = False  # type: ignore[index]
    assert all(not isinstance(value, list) for value in A1111_OPTION_DEFAULTS.values())
    first = a1111_option_defaults()
    first["quicksettings_list"].append("sd_vae")
    first["send_seed"] = False
    second = a1111_option_defaults()
    assert second["quicksettings_list"] == ["sd_model_checkpoint"]
    assert second["send_seed"] is True


def test_restricted_sets_are_option_keys() -> None:
    assert A1111_RESTRICTED_OPTIONS <= A1111_OPTION_DEFAULTS.keys()
    assert A1111_API_RESTRICTED_OPTIONS <= A1111_OPTION_DEFAULTS.keys()
    assert {"outdir_samples", "samples_filename_pattern", "temp_dir"} <= A1111_RESTRICTED_OPTIONS
    assert "samples_format" not in A1111_RESTRICTED_OPTIONS
    assert A1111_API_RESTRICTED_OPTIONS == {"api_enable_requests", "api_forbid_local_requests", "api_useragent"}
