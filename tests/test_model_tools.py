"""The Checkpoint Merger tab's path: titles in, a loadable checkpoint out, errors naming the field."""

from __future__ import annotations

import gradio as gr
import pytest
from safetensors.torch import load_file, save_file

from modules.models.merge import MergeError
from modules.paths import DEMO_MODEL_DIR
from modules.studio import Studio
from modules.ui.merger_tab import MERGE_FIELDS, run_merge
from tests.studio_fixtures import data_dir, studio

__all__ = ["data_dir", "studio"]


def _fields(**changes: object) -> tuple[object, ...]:
    values = {"primary_model": "tiny-sd15", "secondary_model": "tiny-sd15-b", "tertiary_model": "",
              "custom_name": "", "multiplier": 0.25, "interp_method": "Weighted sum", "save_as_half": False,
              "config_source": "A, B or C", "bake_in_vae": "None", "discard_weights": ""}
    values.update(changes)
    return tuple(values[name] for name in MERGE_FIELDS)


@pytest.fixture
def two_models(studio: Studio) -> Studio:
    """A second checkpoint: the tiny one with every float tensor doubled (and its config folder)."""
    folder = studio.context.paths.checkpoints
    tensors = load_file(str(folder / "tiny-sd15.safetensors"))
    save_file({k: v * 2 if v.is_floating_point() else v for k, v in tensors.items()},
              str(folder / "tiny-sd15-b.safetensors"))
    for item in folder.glob("tiny-sd15.*"):
        if item.suffix != ".safetensors":
            target = folder / item.name.replace("tiny-sd15", "tiny-sd15-b")
            if item.is_dir():
                import shutil

                shutil.copytree(item, target)
            else:
                target.write_bytes(item.read_bytes())
    studio.refresh_checkpoints()
    return studio


def test_merge_writes_a_weighted_sum_that_the_studio_lists_and_generates_with(two_models: Studio) -> None:
    message = run_merge(two_models, _fields())
    merged_path = two_models.context.paths.checkpoints / "0.75(tiny-sd15) + 0.25(tiny-sd15-b).safetensors"
    assert message.startswith("Checkpoint saved: 0.75(tiny-sd15) + 0.25(tiny-sd15-b)") and merged_path.is_file()
    a = load_file(str(two_models.context.paths.checkpoints / "tiny-sd15.safetensors"))
    merged = load_file(str(merged_path))
    key = next(k for k, v in a.items() if "model.diffusion_model" in k and v.is_floating_point())
    assert merged[key].allclose(a[key] * 0.75 + a[key] * 2 * 0.25)  # (1 - m)·A + m·B
    job_id = two_models.submit_txt2img({"prompt": "x", "steps": 2, "width": 64, "height": 64,
                                        "override_settings": {"sd_model_checkpoint": merged_path.stem}})
    status = two_models.wait(job_id, timeout=120)
    assert status.state == "done", status.error
    assert f"Model: {merged_path.stem}" in status.result.infotexts[0]


@pytest.mark.parametrize(("changes", "field"), [
    ({"primary_model": ""}, "primary_model"),
    ({"secondary_model": "nope"}, "secondary_model"),
    ({"interp_method": "Add difference"}, "tertiary_model"),
    ({"discard_weights": "(["}, "discard_weights"),
    ({"custom_name": "../escape"}, "custom_name"),
    ({"bake_in_vae": "missing.safetensors"}, "bake_in_vae"),
])
def test_bad_settings_name_the_field_and_write_nothing(two_models: Studio, changes: dict, field: str) -> None:
    before = sorted(p.name for p in two_models.context.paths.checkpoints.iterdir())
    with pytest.raises(gr.Error, match=f"^['\"]{field}:"):
        run_merge(two_models, _fields(**changes))
    assert sorted(p.name for p in two_models.context.paths.checkpoints.iterdir()) == before


def test_an_existing_name_is_not_overwritten(two_models: Studio) -> None:
    run_merge(two_models, _fields(custom_name="mine"))
    with pytest.raises(MergeError, match="already exists"):
        two_models.model_tools.merge(dict(zip(MERGE_FIELDS, _fields(custom_name="mine"), strict=True)))


def test_models_tab_lists_each_kind_with_family_notes_and_background_hashes(studio: Studio, sd15_model) -> None:
    from tests.network_files import kohya_lora, write_lora
    from tests.upscaler_files import write_tiny_upscaler

    tools = studio.model_tools
    # The data dir's checkpoint and the bundled demo model (outside the data dir): the registry's list.
    demo, checkpoint = tools.entries("checkpoints")
    assert demo.path.parent == DEMO_MODEL_DIR
    assert [c.path for c in studio.checkpoints()] == [checkpoint.path, demo.path]
    assert (checkpoint.name, checkpoint.family, checkpoint.short_hash) == ("tiny-sd15", "SD1.x", None)
    write_lora(studio.context.paths.lora / "style.safetensors", kohya_lora(sd15_model.pipeline))
    write_tiny_upscaler(studio.context.paths.upscalers[0] / "2x-tiny.safetensors", 2)
    assert [e.name for e in tools.entries("lora")] == ["style"]
    assert tools.entries("upscalers")[0].family.startswith("RealESRGAN")
    tools.save_notes("lora", "style", {"activation text": "in the style of x", "notes": "mine"})
    assert tools.entry("lora", "style").trigger_words == "in the style of x"
    from modules.ui.models_tab import table_rows

    assert table_rows(tools.entries("lora"))[0][4] == "in the style of x"
    hasher = tools.start_hashing("checkpoints")
    assert hasher.join(60) and tools.entries("checkpoints")[1].short_hash == studio.context.registry.hashes.\
        short_hash(checkpoint.path)
    assert tools.memory()["ram"]["total"]


def test_install_and_delete_only_where_the_server_allows_it(studio: Studio, tmp_path) -> None:
    from modules.models.install import ModelInstallError
    from tests.upscaler_files import write_tiny_upscaler

    source = write_tiny_upscaler(tmp_path / "4x-new.safetensors", 4)
    tools = studio.model_tools
    installed = tools.install_path("upscalers", str(source))
    assert installed.parent == studio.context.paths.upscalers[0] and "4x-new" in studio.context.upscalers.names()
    assert tools.delete("upscalers", "4x-new") == installed and not installed.exists()
    studio.context.extension_install_allowed = False
    with pytest.raises(ModelInstallError):
        tools.install_path("upscalers", str(source))
    with pytest.raises(ModelInstallError):
        tools.delete("checkpoints", "tiny-sd15")
    assert (studio.context.paths.checkpoints / "tiny-sd15.safetensors").is_file()


def test_merging_only_where_the_server_allows_installing(two_models: Studio) -> None:
    import gradio as gr

    two_models.context.extension_install_allowed = False
    before = sorted(p.name for p in two_models.context.paths.checkpoints.iterdir())
    with pytest.raises(gr.Error, match="--enable-insecure-extension-access"):
        run_merge(two_models, _fields())
    assert sorted(p.name for p in two_models.context.paths.checkpoints.iterdir()) == before


def test_the_models_tab_shows_blocked_files_with_their_reason(studio: Studio) -> None:
    from modules.ui.models_tab import TABLE_HEADERS, table_rows
    from tests.security.hostile_files import write_hostile_checkpoints

    folder = studio.context.paths.checkpoints
    write_hostile_checkpoints(folder, folder / "tiny-sd15.safetensors")
    (studio.context.paths.lora / "lfs.safetensors").parent.mkdir(parents=True, exist_ok=True)
    (studio.context.paths.lora / "lfs.safetensors").write_text("version https://git-lfs.github.com/spec/v1\n")
    studio.context.registry.refresh()
    rows = table_rows(studio.model_tools.entries("checkpoints"))
    status = {row[0]: row[TABLE_HEADERS.index("Status")] for row in rows}
    assert status["tiny-sd15"] == "ok" and status["af-partial"] == "ok"  # only loading finds that one out
    assert status["aa-pickle"].startswith("blocked: is a pickle file") and "git-lfs" in status["ab-lfs-pointer"]
    assert all(status[name].startswith("blocked: ") for name in ("ac-truncated", "ad-html-page", "ae-not-a-model"))
    assert str(folder) not in "".join(status.values())
    assert "aa-pickle" not in [info.name for info in studio.checkpoints()]  # nor in any dropdown
    lora = table_rows(studio.model_tools.entries("lora"))[0]
    assert lora[0] == "lfs" and "git-lfs" in lora[TABLE_HEADERS.index("Status")]


def test_the_merger_takes_model_names_only(studio: Studio) -> None:
    path = str(studio.context.paths.checkpoints / "tiny-sd15.safetensors")
    with pytest.raises(gr.Error, match="primary_model") as caught:
        run_merge(studio, _fields(primary_model=path, secondary_model=""))
    assert str(studio.context.paths.root) not in str(caught.value)
