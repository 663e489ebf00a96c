"""Round trips of modules.models.ldm_export through diffusers' single-file loader.

Each tiny family is exported to one LDM ``.safetensors`` plus a configs-only diffusers
folder, loaded back offline with ``<Pipeline>.from_single_file(path, config=<folder>,
local_files_only=True, tokenizer=..., tokenizer_2=...)``, and compared tensor by tensor.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from modules.models.ldm_export import pipeline_to_ldm, save_ldm_checkpoint, unet_to_ldm, vae_to_ldm  # noqa: E402
from tests.tiny_models import FAMILIES, build_tiny_pipeline, tiny_tokenizers, write_tiny_checkpoint  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")
COMMON_KEYS = [
    "model.diffusion_model.input_blocks.0.0.weight",
    "model.diffusion_model.input_blocks.2.0.op.weight",
    "model.diffusion_model.middle_block.1.proj_in.weight",
    "model.diffusion_model.middle_block.2.out_layers.3.weight",
    "model.diffusion_model.out.2.weight",
    "first_stage_model.decoder.up.0.block.0.conv1.weight",
    "first_stage_model.decoder.up.3.upsample.conv.weight",
    "first_stage_model.encoder.mid.attn_1.proj_out.weight",
]
EXPECTED_KEYS = {  # by family without the "_inpaint" suffix
    "sd15": [
        "model.diffusion_model.input_blocks.1.1.proj_in.weight",
        "model.diffusion_model.output_blocks.1.1.conv.weight",
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
        "cond_stage_model.transformer.text_model.encoder.layers.1.self_attn.q_proj.weight",
    ],
    "sd2": [
        "cond_stage_model.model.token_embedding.weight",
        "cond_stage_model.model.positional_embedding",
        "cond_stage_model.model.transformer.resblocks.1.attn.in_proj_weight",
        "cond_stage_model.model.transformer.resblocks.0.mlp.c_fc.weight",
        "cond_stage_model.model.ln_final.weight",
    ],
    "sdxl": [
        "model.diffusion_model.label_emb.0.0.weight",
        "model.diffusion_model.label_emb.0.2.weight",
        "model.diffusion_model.input_blocks.3.1.transformer_blocks.1.attn2.to_k.weight",
        "model.diffusion_model.output_blocks.1.2.conv.weight",
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
        "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight",
        "conditioner.embedders.1.model.text_projection",
    ],
}
LDM_PREFIXES = (
    "model.diffusion_model.",
    "first_stage_model.",
    "cond_stage_model.transformer.text_model.",
    "cond_stage_model.model.",
    "conditioner.embedders.0.transformer.text_model.",
    "conditioner.embedders.1.model.",
)


def _load_back(family: str, path: Path) -> object:
    """Loads an exported tiny checkpoint with diffusers, offline, from its config folder."""
    pipeline_class = type(build_tiny_pipeline(family))
    config_dir = path.with_suffix(".config")
    return pipeline_class.from_single_file(
        str(path), config=str(config_dir), local_files_only=True, **tiny_tokenizers(family)
    )


@pytest.fixture(scope="module", params=FAMILIES)
def round_trip(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Exports one family, loads it back and keeps both pipelines and the file."""
    family = request.param
    path = write_tiny_checkpoint(tmp_path_factory.mktemp(family), family)
    return SimpleNamespace(
        family=family, path=path, original=build_tiny_pipeline(family), reloaded=_load_back(family, path)
    )


def _assert_same_tensors(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor], what: str) -> None:
    """Asserts equal key sets and bit-identical tensors (dtype and shape included)."""
    assert first.keys() == second.keys(), f"{what}: keys differ: {sorted(first.keys() ^ second.keys())[:5]}"
    for key, tensor in first.items():
        other = second[key]
        assert not other.is_meta, f"{what}: {key} was never loaded"
        assert tensor.dtype == other.dtype and torch.equal(tensor, other), f"{what}: {key} differs"


def test_reloaded_components_equal_original(round_trip: SimpleNamespace) -> None:
    for name in MODEL_COMPONENTS:
        original = getattr(round_trip.original, name, None)
        if original is None:
            continue
        reloaded = getattr(round_trip.reloaded, name)
        assert type(reloaded) is type(original)
        _assert_same_tensors(original.state_dict(), reloaded.state_dict(), f"{round_trip.family}.{name}")


def test_reloaded_pipeline_uses_passed_tokenizers(round_trip: SimpleNamespace) -> None:
    # The config folder has no tokenizer files; without tokenizer=... diffusers silently builds
    # an empty 2-token CLIPTokenizer, so the loader must always pass the real ones.
    for name in ("tokenizer", "tokenizer_2"):
        if getattr(round_trip.original, name, None) is not None:
            assert len(getattr(round_trip.reloaded, name)) == 49408


def test_reloaded_scheduler_config_equal(round_trip: SimpleNamespace) -> None:
    def public(config: dict) -> dict:
        return {k: v for k, v in config.items() if not k.startswith("_")}

    original, reloaded = round_trip.original.scheduler, round_trip.reloaded.scheduler
    assert type(reloaded) is type(original)
    assert public(dict(reloaded.config)) == public(dict(original.config))


def test_reexport_is_identical(round_trip: SimpleNamespace) -> None:
    first = load_file(round_trip.path)
    _assert_same_tensors(first, pipeline_to_ldm(round_trip.reloaded), round_trip.family)


def test_key_layout_is_ldm(round_trip: SimpleNamespace) -> None:
    family = round_trip.family
    state = load_file(round_trip.path)
    for key in COMMON_KEYS + EXPECTED_KEYS[family.removesuffix("_inpaint")]:
        assert key in state, f"{family}: missing {key}"
    assert all(key.startswith(LDM_PREFIXES) for key in state)
    in_channels = state["model.diffusion_model.input_blocks.0.0.weight"].shape[1]
    assert in_channels == (9 if family.endswith("_inpaint") else 4)
    assert state["first_stage_model.encoder.mid.attn_1.q.weight"].ndim == 4


def test_tensor_mapping_details() -> None:
    pipe = build_tiny_pipeline("sdxl")
    state = pipeline_to_ldm(pipe)
    # LDM stores decoder levels in reverse: up.0 is diffusers' last (full-resolution) block.
    full_resolution = pipe.vae.decoder.up_blocks[3].resnets[0].conv1.weight
    assert torch.equal(state["first_stage_model.decoder.up.0.block.0.conv1.weight"], full_resolution)
    assert "first_stage_model.decoder.up.0.upsample.conv.weight" not in state
    assert "first_stage_model.decoder.up.3.upsample.conv.weight" in state
    attn = pipe.text_encoder_2.text_model.encoder.layers[0].self_attn
    fused = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
    assert torch.equal(state["conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"], fused)
    projection = state["conditioner.embedders.1.model.text_projection"]
    assert torch.equal(projection, pipe.text_encoder_2.text_projection.weight.T)
    assert projection.shape == (48, 32)  # OpenCLIP: [hidden, projection]


def test_export_tensors_are_contiguous_and_unshared() -> None:
    state = pipeline_to_ldm(build_tiny_pipeline("sd2"))
    storages = [tensor.untyped_storage().data_ptr() for tensor in state.values()]
    assert len(set(storages)) == len(storages)
    assert all(tensor.is_contiguous() for tensor in state.values())


def test_text_layout_rules() -> None:
    sd15 = build_tiny_pipeline("sd15")
    forced = pipeline_to_ldm(sd15, text_layout="open_clip")
    assert "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight" in forced
    assert not any(key.startswith("cond_stage_model.transformer.") for key in forced)
    sdxl = build_tiny_pipeline("sdxl")
    refiner = SimpleNamespace(unet=None, vae=None, text_encoder=None, text_encoder_2=sdxl.text_encoder_2)
    refiner_state = pipeline_to_ldm(refiner)
    assert "conditioner.embedders.0.model.text_projection" in refiner_state
    assert all(key.startswith("conditioner.embedders.0.model.") for key in refiner_state)
    with pytest.raises(ValueError):
        pipeline_to_ldm(sdxl, text_layout="clip")


def test_unknown_unet_keys_raise() -> None:
    unet = build_tiny_pipeline("sd15").unet
    state = dict(unet.state_dict(), **{"encoder_hid_proj.weight": torch.zeros(1)})
    with pytest.raises(KeyError, match="encoder_hid_proj"):
        unet_to_ldm(state, unet.config)


@pytest.mark.parametrize("layers_per_block", [2, 3])
def test_unet_and_vae_any_layers_per_block(layers_per_block: int, tmp_path: Path) -> None:
    torch.manual_seed(layers_per_block)
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 32, 64),
        layers_per_block=layers_per_block,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=8,
    )
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        layers_per_block=layers_per_block,
        norm_num_groups=8,
    )
    unet.save_config(tmp_path / "unet")
    vae.save_config(tmp_path / "vae")
    checkpoint = {**unet_to_ldm(unet.state_dict(), unet.config), **vae_to_ldm(vae.state_dict(), vae.config)}
    for model in (unet, vae):
        name = "unet" if model is unet else "vae"
        loaded = type(model).from_single_file(checkpoint, config=str(tmp_path), subfolder=name, local_files_only=True)
        _assert_same_tensors(model.state_dict(), loaded.state_dict(), name)


def test_save_ldm_checkpoint_fp16_and_metadata(tmp_path: Path) -> None:
    pipe = build_tiny_pipeline("sd15")
    target = tmp_path / "out" / "tiny.safetensors"
    target.parent.mkdir()
    target.write_bytes(b"stale")  # an existing file is replaced
    path = save_ldm_checkpoint(pipe, target, dtype=torch.float16, metadata={"modelspec.title": "tiny"})
    assert path == target
    assert os.listdir(target.parent) == ["tiny.safetensors"]  # no temp file left behind
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata() == {"format": "pt", "modelspec.title": "tiny"}
    saved, reference = load_file(path), pipeline_to_ldm(pipe)
    assert saved.keys() == reference.keys()
    for key, tensor in saved.items():
        assert tensor.dtype == torch.float16, key
        assert torch.equal(tensor, reference[key].half()), key


def test_save_rejects_non_string_metadata(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        save_ldm_checkpoint(build_tiny_pipeline("sd15"), tmp_path / "x.safetensors", metadata={"steps": 20})
    assert not list(tmp_path.iterdir())


def test_module_does_not_import_ui_or_processing() -> None:
    code = (
        "import sys, modules.models.ldm_export\n"
        "banned = ('gradio', 'modules.processing', 'modules.ui')\n"
        "bad = [m for m in sys.modules if m in banned or m.startswith(tuple(b + '.' for b in banned))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=60)
