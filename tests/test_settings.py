"""Settings: typed defaults, the generic registry, validation, the config.json store and its safety nets."""

from __future__ import annotations

import dataclasses
import doctest
import errno
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

import modules.settings as settings_module
from modules.processing.errors import StorageFullError
from modules.settings import (
    SECTIONS,
    SETTING_INFOS,
    SETTINGS_BY_KEY,
    Settings,
    SettingsStore,
    output_dir,
    validate_settings,
)

CHANGED = {"samples_save": False, "outdir_txt2img_samples": "my-outputs/t2i", "sd_vae": "kl-f8.safetensors",
           "CLIP_stop_at_last_layers": 2, "eta_ddim": 0.25, "show_progress_every_n_steps": -1,
           "quicksettings_list": ("sd_model_checkpoint", "eta_ddim")}


@pytest.fixture
def store(tmp_path: Path) -> SettingsStore:
    return SettingsStore(tmp_path / "config.json")


def _saved(store: SettingsStore, **values: Any) -> Settings:
    settings = dataclasses.replace(Settings(), **values)
    store.save(settings)
    return settings


def _warnings_about(warnings: list[str], key: str) -> list[str]:
    return [w for w in warnings if repr(key) in w]


# -- defaults and the registry ----------------------------------------------------------------


def test_defaults_match_a1111_and_the_product() -> None:
    s = Settings()
    assert (s.samples_save, s.samples_format, s.save_to_dirs) == (True, "png", True)
    assert (s.outdir_txt2img_samples, s.sd_model_checkpoint, s.sd_vae) == ("", "", "Automatic")
    assert (s.sd_checkpoints_limit, s.CLIP_stop_at_last_layers) == (1, 1)
    assert s.eta_ddim == 0.0
    assert (s.show_progress_every_n_steps, s.live_previews_enable, s.live_preview_refresh_period) == (5, True, 1000)
    # Forge's "VAE / Text Encoder" selector sits beside the checkpoint: FLUX needs its parts chosen.
    assert s.forge_additional_modules == ()
    assert s.quicksettings_list == ("sd_model_checkpoint", "sd_vae", "forge_additional_modules",
                                    "CLIP_stop_at_last_layers")
    assert validate_settings({}) == (s, [])


def test_every_settings_field_has_exactly_one_setting_info_and_vice_versa() -> None:
    fields = [f.name for f in dataclasses.fields(Settings)]
    keys = [info.key for info in SETTING_INFOS]
    assert keys == fields
    assert len(set(keys)) == len(keys) == len(SETTINGS_BY_KEY)


@pytest.mark.parametrize("info", SETTING_INFOS, ids=lambda info: info.key)
def test_each_setting_info_is_renderable_and_fits_its_default(info) -> None:
    default = getattr(Settings(), info.key)
    assert info.label and info.section in SECTIONS
    assert info.kind in ("checkbox", "slider", "number", "text", "dropdown")
    assert (info.kind == "checkbox") == isinstance(default, bool)
    if info.kind == "slider":
        assert None not in (info.minimum, info.maximum, info.step)
        assert info.minimum <= default <= info.maximum
    if info.kind == "dropdown":
        assert info.choices or info.choices_from
    if info.multiselect:
        assert set(default) <= set(info.choices)
    elif info.choices:
        assert default in info.choices


def test_every_section_is_used_and_quicksettings_offer_every_setting() -> None:
    assert {info.section for info in SETTING_INFOS} == set(SECTIONS)
    quicksettings = SETTINGS_BY_KEY["quicksettings_list"]
    assert set(quicksettings.choices) == set(SETTINGS_BY_KEY) and quicksettings.multiselect
    assert {info.choices_from for info in SETTING_INFOS} == {"", "checkpoints", "vae", "modules"}  # run-time lists


def test_per_request_values_never_touch_the_stored_settings(store: SettingsStore) -> None:
    stored = _saved(store, CLIP_stop_at_last_layers=1)
    per_request = dataclasses.replace(store.current, CLIP_stop_at_last_layers=3)
    assert per_request.CLIP_stop_at_last_layers == 3
    assert store.current == stored and SettingsStore(store.path).load()[0] == stored
    with pytest.raises(dataclasses.FrozenInstanceError):
        store.current.CLIP_stop_at_last_layers = 2  # type: ignore[misc]
    outcome = doctest.testmod(settings_module)  # the docstring example runs
    assert outcome.attempted >= 1 and outcome.failed == 0


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "bad"), [
    ("samples_save", "yes"),
    ("samples_save", 1),
    ("samples_format", "gif"),
    ("randn_source", "NV"),
    ("eta_noise_seed_delta", -1),
    ("jpeg_quality", 0),
    ("sd_checkpoints_limit", 2.5),
    ("sd_checkpoints_limit", True),
    ("sd_checkpoints_limit", "3"),
    ("sd_checkpoints_limit", 11),
    ("CLIP_stop_at_last_layers", 0),
    ("eta_ddim", "0.5"),
    ("eta_ddim", math.nan),
    ("eta_ddim", 1.5),
    ("show_progress_every_n_steps", -2),
    ("live_preview_refresh_period", 10),
    ("sd_vae", 5),
    ("sd_model_checkpoint", None),
    ("quicksettings_list", 5),
    ("quicksettings_list", [1, 2]),
])
def test_a_bad_value_falls_back_to_the_default_for_that_key_only(key: str, bad: Any) -> None:
    other, good = ("eta_ddim", 0.5) if key != "eta_ddim" else ("CLIP_stop_at_last_layers", 2)
    settings, warnings = validate_settings({key: bad, other: good})
    assert getattr(settings, key) == getattr(Settings(), key)
    assert getattr(settings, other) == good  # the good value next to it is kept
    assert len(warnings) == 1 and _warnings_about(warnings, key) == warnings
    assert "keeping the default" in warnings[0]


def test_numbers_are_converted_where_no_information_is_lost() -> None:
    settings, warnings = validate_settings({"sd_checkpoints_limit": 3.0, "eta_ddim": 1})
    assert warnings == []
    assert settings.sd_checkpoints_limit == 3 and type(settings.sd_checkpoints_limit) is int
    assert settings.eta_ddim == 1.0 and type(settings.eta_ddim) is float


def test_quicksettings_accept_a1111_lists_and_comma_text_and_drop_unknown_entries() -> None:
    from_list, warnings = validate_settings({"quicksettings_list": ["sd_vae", "sd_hypernetwork", "sd_vae"]})
    assert from_list.quicksettings_list == ("sd_vae",)
    assert len(warnings) == 1 and "'sd_hypernetwork'" in warnings[0] and "'quicksettings_list'" in warnings[0]
    from_text, warnings = validate_settings({"quicksettings_list": "sd_model_checkpoint, CLIP_stop_at_last_layers"})
    assert from_text.quicksettings_list == ("sd_model_checkpoint", "CLIP_stop_at_last_layers") and warnings == []


def test_unknown_keys_are_set_aside_with_a_warning() -> None:
    settings, warnings = validate_settings({"sd_hypernetwork": "None", 3: "x", "eta_ddim": 0.1})
    assert settings == dataclasses.replace(Settings(), eta_ddim=0.1)
    assert len(warnings) == 2 and all("unknown setting" in w for w in warnings)
    assert "'sd_hypernetwork'" in warnings[0]


def test_validate_never_raises_on_garbage() -> None:
    settings, warnings = validate_settings(["not", "a", "mapping"])  # type: ignore[arg-type]
    assert settings == Settings() and len(warnings) == 1


def test_a_base_keeps_current_values_instead_of_defaults() -> None:
    base = dataclasses.replace(Settings(), eta_ddim=0.3)
    settings, warnings = validate_settings({"eta_ddim": "oops", "samples_save": False}, base=base)
    assert settings.eta_ddim == 0.3 and settings.samples_save is False
    assert "keeping the current value 0.3" in warnings[0]


ESCAPES = ["/etc", "/tmp/out", "../outputs", "outputs/../../x", "C:\\Windows", "C:relative", "\\\\server\\share",
           "a\\..\\..\\b", "~/out", "~root", "out\x00put"]


@pytest.mark.parametrize("value", ESCAPES)
@pytest.mark.parametrize("key", ["outdir_samples", "outdir_txt2img_samples"])
def test_output_folders_cannot_leave_the_data_dir(key: str, value: str) -> None:
    settings, warnings = validate_settings({key: value})
    assert getattr(settings, key) == ""
    assert len(warnings) == 1 and repr(key) in warnings[0] and "relative path inside the data folder" in warnings[0]


@pytest.mark.parametrize("value", ["", "outputs/txt2img-images", "my outputs/t2i", "a/b/c", "out..put"])
def test_relative_output_folders_are_accepted(value: str) -> None:
    settings, warnings = validate_settings({"outdir_txt2img_samples": value})
    assert settings.outdir_txt2img_samples == value and warnings == []


def test_checkpoint_and_vae_names_cannot_be_paths_out_of_the_data_dir() -> None:
    settings, warnings = validate_settings({"sd_model_checkpoint": "../../secret.safetensors", "sd_vae": "/etc/vae"})
    assert (settings.sd_model_checkpoint, settings.sd_vae) == ("", "Automatic") and len(warnings) == 2
    ok, warnings = validate_settings({"sd_model_checkpoint": "SDXL/base.safetensors [31e35c80fc]", "sd_vae": "None"})
    assert ok.sd_model_checkpoint == "SDXL/base.safetensors [31e35c80fc]" and warnings == []


def test_output_dir_follows_a1111_fallbacks(tmp_path: Path) -> None:
    defaults = Settings()
    assert output_dir(defaults, "outdir_txt2img_samples", tmp_path) == tmp_path / "outputs" / "txt2img-images"
    custom = dataclasses.replace(defaults, outdir_txt2img_samples="mine")
    assert output_dir(custom, "outdir_txt2img_samples", tmp_path) == tmp_path / "mine"
    everything = dataclasses.replace(custom, outdir_samples="all")
    assert output_dir(everything, "outdir_txt2img_samples", tmp_path) == tmp_path / "all"
    with pytest.raises(KeyError):
        output_dir(defaults, "outdir_samples", tmp_path)
    with pytest.raises(ValueError, match="outside"):  # a value that skipped validation is still refused
        output_dir(dataclasses.replace(defaults, outdir_txt2img_samples="/etc"), "outdir_txt2img_samples", tmp_path)



def test_save_button_folder_is_log_images_and_stays_inside_the_data_dir(tmp_path: Path) -> None:
    defaults = Settings()
    assert defaults.outdir_save == "log/images"
    assert SETTINGS_BY_KEY["outdir_save"].section == "Paths for saving"
    assert output_dir(defaults, "outdir_save", tmp_path) == tmp_path / "log" / "images"
    emptied = dataclasses.replace(defaults, outdir_save="")
    assert output_dir(emptied, "outdir_save", tmp_path) == tmp_path / "log" / "images"
    assert output_dir(dataclasses.replace(defaults, outdir_save="kept"), "outdir_save", tmp_path) == tmp_path / "kept"
    for escape in ESCAPES:
        settings, warnings = validate_settings({"outdir_save": escape})
        assert settings.outdir_save == "log/images" and len(warnings) == 1

# -- the store ----------------------------------------------------------------------------------


def test_a_missing_file_gives_defaults_without_warnings(store: SettingsStore) -> None:
    assert store.load() == (Settings(), [])
    assert not store.path.exists()


def test_save_and_load_round_trip(store: SettingsStore) -> None:
    saved = _saved(store, **CHANGED)
    raw = json.loads(store.path.read_text(encoding="utf-8"))
    assert raw["quicksettings_list"] == ["sd_model_checkpoint", "eta_ddim"]  # A1111 stores lists
    assert set(raw) == set(SETTINGS_BY_KEY)
    assert SettingsStore(store.path).load() == (saved, [])


def test_an_a1111_config_loads_and_its_unknown_keys_survive_a_save(store: SettingsStore) -> None:
    a1111 = {"samples_save": True, "outdir_txt2img_samples": "outputs/txt2img-images", "CLIP_stop_at_last_layers": 2,
             "sd_hypernetwork": "None", "lora_preferred_name": "Alias from file", "quicksettings_list": ["sd_vae"]}
    store.path.write_text(json.dumps(a1111), encoding="utf-8")
    settings, warnings = store.load()
    assert settings.CLIP_stop_at_last_layers == 2 and settings.quicksettings_list == ("sd_vae",)
    assert len(warnings) == 2 and all("kept in the file but not used" in w for w in warnings)
    store.apply({"eta_ddim": 0.5})
    raw = json.loads(store.path.read_text(encoding="utf-8"))
    assert raw["sd_hypernetwork"] == "None" and raw["lora_preferred_name"] == "Alias from file"
    assert raw["eta_ddim"] == 0.5


def test_saving_keeps_the_previous_good_file_as_bak(store: SettingsStore) -> None:
    _saved(store, eta_ddim=0.1)
    first = store.path.read_bytes()
    _saved(store, eta_ddim=0.2)
    assert store.backup_path.read_bytes() == first
    assert json.loads(store.path.read_text(encoding="utf-8"))["eta_ddim"] == 0.2


def _good_json() -> bytes:
    return json.dumps(dataclasses.asdict(Settings())).encode()


CORRUPTIONS = {
    "empty": (lambda good: b"", "is empty"),
    "truncated": (lambda good: good[: len(good) // 2], "is not valid JSON"),
    "bad utf-8": (lambda good: b'{"eta_ddim": "\xff\xfe"}', "is not UTF-8 text"),
    "a list": (lambda good: b'["samples_save", true]', "holds a JSON list"),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupt_config_falls_back_to_the_backup(store: SettingsStore, corruption: str) -> None:
    previous = _saved(store, eta_ddim=0.1)
    _saved(store, eta_ddim=0.2)  # config.json.bak now holds eta_ddim=0.1
    damage, reason = CORRUPTIONS[corruption]
    store.path.write_bytes(damage(store.path.read_bytes()))
    settings, warnings = SettingsStore(store.path).load()
    assert settings == previous
    assert len(warnings) == 1
    assert str(store.path) in warnings[0] and reason in warnings[0] and str(store.backup_path) in warnings[0]


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupt_config_without_a_backup_gives_defaults(store: SettingsStore, corruption: str) -> None:
    damage, reason = CORRUPTIONS[corruption]
    store.path.write_bytes(damage(_good_json()))
    settings, warnings = store.load()
    assert settings == Settings()
    assert len(warnings) == 1 and reason in warnings[0] and "no backup" in warnings[0]


def test_a_corrupt_backup_too_gives_defaults_and_says_so(store: SettingsStore) -> None:
    store.path.write_bytes(b"{")
    store.backup_path.write_bytes(b"")
    settings, warnings = store.load()
    assert settings == Settings() and len(warnings) == 1
    assert "is not valid JSON" in warnings[0] and "is empty too" in warnings[0]


def test_an_unreadable_path_is_a_warning_not_a_crash(store: SettingsStore) -> None:
    store.path.mkdir()
    settings, warnings = store.load()
    assert settings == Settings() and "could not be read" in warnings[0]


def test_saving_over_a_corrupt_file_keeps_a_copy_of_it_and_the_backup_intact(store: SettingsStore) -> None:
    _saved(store, eta_ddim=0.1)
    _saved(store, eta_ddim=0.2)
    good_backup = store.backup_path.read_bytes()
    store.path.write_bytes(b'{"eta_ddim": 0.3,')  # a hand edit gone wrong
    loaded, warnings = store.load()
    assert loaded.eta_ddim == 0.1 and "config.json.corrupt-<time>" in warnings[0]
    assert store.config_error is not None and "uses the last good settings, from config.json.bak" in store.config_error
    store.apply({"eta_ddim": 0.4})
    (copy,) = _corrupt_copies(store)
    assert copy.read_bytes() == b'{"eta_ddim": 0.3,' and store.corrupt_copy == copy
    assert f"kept as {copy.name}" in store.config_error  # still reported, now saying where the file is
    assert store.backup_path.read_bytes() == good_backup  # a broken file never replaces a good backup
    assert SettingsStore(store.path).load()[0].eta_ddim == 0.4


def _corrupt_copies(store: SettingsStore) -> list[Path]:
    return sorted(store.path.parent.glob("config.json.corrupt-*"))


def test_a_second_corruption_never_replaces_the_copy_of_the_first(store: SettingsStore) -> None:
    for damage in (b"first broken", b"second broken"):
        store.path.write_bytes(damage)
        store.load()
        store.apply({"eta_ddim": 0.5 if damage.startswith(b"first") else 0.6})
    assert sorted(p.read_bytes() for p in _corrupt_copies(store)) == [b"first broken", b"second broken"]
    assert not [p.name for p in store.path.parent.iterdir() if p.name.endswith(".tmp")]


def test_the_config_error_names_no_folder_and_is_none_for_a_good_file(store: SettingsStore) -> None:
    store.load()
    assert store.config_error is None
    store.path.write_bytes(b"\xff\xfe not utf-8")
    store.load()
    message = store.config_error
    assert message is not None and message.startswith("config.json is not UTF-8 text")
    assert "default settings" in message and str(store.path.parent) not in message
    _saved(store, eta_ddim=0.3)
    store.load()
    assert store.config_error is None


def test_apply_validates_saves_and_returns(store: SettingsStore) -> None:
    settings, warnings = store.apply({"eta_ddim": 0.3, "outdir_txt2img_samples": "/etc", "nonsense": 1})
    assert settings.eta_ddim == 0.3 and settings.outdir_txt2img_samples == ""
    assert len(_warnings_about(warnings, "outdir_txt2img_samples")) == 1
    assert len(_warnings_about(warnings, "nonsense")) == 1
    assert store.current == settings and SettingsStore(store.path).load()[0] == settings
    again, warnings = store.apply({"eta_ddim": "bad"})
    assert again.eta_ddim == 0.3 and "keeping the current value 0.3" in warnings[0]
    assert "nonsense" not in json.loads(store.path.read_text(encoding="utf-8"))


def test_apply_accepts_the_full_merged_form(store: SettingsStore) -> None:
    form = {**dataclasses.asdict(store.current), **CHANGED, "sd_checkpoints_limit": 2.0}
    settings, warnings = store.apply(form)
    assert warnings == [] and settings == dataclasses.replace(Settings(), **CHANGED, sd_checkpoints_limit=2)


def test_apply_without_changes_writes_nothing(store: SettingsStore) -> None:
    assert store.apply({"eta_ddim": 0.0}) == (Settings(), [])
    assert not store.path.exists()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("failing", ["config.json", "config.json.bak"])
def test_a_crash_during_save_leaves_the_old_file_intact_and_no_temp_file(
        store: SettingsStore, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    _saved(store, eta_ddim=0.1)
    _saved(store, eta_ddim=0.2)
    before = store.path.read_bytes()
    real_replace = os.replace

    def crash(src: str | Path, dst: str | Path) -> None:
        if Path(dst).name == failing:
            raise OSError(errno.EIO, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(settings_module.os, "replace", crash)
    with pytest.raises(OSError, match="Input/output error"):
        store.save(dataclasses.replace(Settings(), eta_ddim=0.9))
    assert store.path.read_bytes() == before
    assert _leftovers(store.path.parent) == []
    settings, warnings = store.apply({"eta_ddim": 0.9})
    assert settings.eta_ddim == 0.2 and "Could not save settings" in warnings[-1]
    assert str(store.path.parent) not in warnings[-1]  # the warning may reach an API client
    assert store.current.eta_ddim == 0.2 and store.path.read_bytes() == before
    assert _leftovers(store.path.parent) == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
def test_a_full_disk_during_save_is_a_storage_full_error_and_changes_nothing(
        store: SettingsStore, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    _saved(store, eta_ddim=0.2)
    before = store.path.read_bytes()
    real_replace = os.replace

    def full(src: str | Path, dst: str | Path) -> None:
        if Path(dst).name == "config.json":
            raise OSError(code, os.strerror(code), str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(settings_module.os, "replace", full)
    with pytest.raises(StorageFullError, match="Not enough disk space to save the settings") as raised:
        store.apply({"eta_ddim": 0.9})
    assert str(store.path) not in str(raised.value)
    with pytest.raises(StorageFullError):
        store.set_extra({"my_extension_strength": 0.5})
    assert store.current.eta_ddim == 0.2 and store.path.read_bytes() == before
    assert "my_extension_strength" not in store.extra()  # a refused value is not kept for the next save
    assert _leftovers(store.path.parent) == []
    monkeypatch.setattr(settings_module.os, "replace", real_replace)
    store.set_extra({"other_extension_mode": "fast"})  # room again: the next save has only what was saved
    assert json.loads(store.path.read_text())["other_extension_mode"] == "fast"
    assert "my_extension_strength" not in json.loads(store.path.read_text())


def test_extension_settings_are_kept_beside_ours_and_survive_a_save(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path / "config.json")
    store.set_extra({"my_extension_strength": 0.5})
    store.apply({"samples_save": False})
    reopened = SettingsStore(tmp_path / "config.json")
    assert reopened.extra() == {"my_extension_strength": 0.5} and reopened.current.samples_save is False
    with pytest.raises(ValueError, match="built-in setting"):
        reopened.set_extra({"samples_save": True})
