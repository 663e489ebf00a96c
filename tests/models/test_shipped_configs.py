"""Checks on the diffusers-format config folders shipped in modules/models/configs/.

Every model is built from its config on the meta device (accelerate.init_empty_weights), so no
real weights are allocated and the tests run on CPU in seconds. Parameter counts are those of the
reference checkpoints; a wrong layer count, width or channel number changes them.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
from pathlib import Path

import pytest

accelerate = pytest.importorskip("accelerate")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection  # noqa: E402

CONFIG_ROOT = Path(__file__).resolve().parents[2] / "modules" / "models" / "configs"

# Reference parameter counts.
SD15_UNET = 859_520_964
SD2_UNET = 865_910_724
SDXL_UNET = 2_567_463_684
VAE = 83_653_863
CLIP_L = 123_060_480  # CLIPTextModel, ViT-L/14 (SD 1.x, SDXL text_encoder)
OPENCLIP_H_23 = 340_387_840  # CLIPTextModel, OpenCLIP ViT-H with the last of 24 layers dropped (SD 2.x)
OPENCLIP_BIGG = 694_659_840  # CLIPTextModelWithProjection, OpenCLIP ViT-bigG (SDXL text_encoder_2)
# Inpainting UNets take 9 input channels instead of 4 (latents + mask + masked-image latents):
# conv_in gains 5 * 320 * 3 * 3 weights, the bias is unchanged.
INPAINT_EXTRA = 5 * 320 * 3 * 3

FAMILIES = {
    "sd15": dict(
        pipeline="StableDiffusionPipeline", unet=SD15_UNET, in_channels=4, te=CLIP_L,
        prediction_type="epsilon", scaling_factor=0.18215,
    ),
    "sd15_inpaint": dict(
        pipeline="StableDiffusionInpaintPipeline", unet=SD15_UNET + INPAINT_EXTRA, in_channels=9, te=CLIP_L,
        prediction_type="epsilon", scaling_factor=0.18215,
    ),
    "sd2": dict(
        pipeline="StableDiffusionPipeline", unet=SD2_UNET, in_channels=4, te=OPENCLIP_H_23,
        prediction_type="v_prediction", scaling_factor=0.18215,
    ),
    "sd2_inpaint": dict(
        pipeline="StableDiffusionInpaintPipeline", unet=SD2_UNET + INPAINT_EXTRA, in_channels=9, te=OPENCLIP_H_23,
        prediction_type="epsilon", scaling_factor=0.18215,
    ),
    "sdxl": dict(
        pipeline="StableDiffusionXLPipeline", unet=SDXL_UNET, in_channels=4, te=CLIP_L, te2=OPENCLIP_BIGG,
        prediction_type="epsilon", scaling_factor=0.13025,
    ),
    "sdxl_inpaint": dict(
        pipeline="StableDiffusionXLInpaintPipeline", unet=SDXL_UNET + INPAINT_EXTRA, in_channels=9, te=CLIP_L,
        te2=OPENCLIP_BIGG, prediction_type="epsilon", scaling_factor=0.13025,
    ),
}

FAMILY_IDS = sorted(FAMILIES)


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _text_encoder_dirs(family: str) -> list[Path]:
    names = ["text_encoder", "text_encoder_2"] if "te2" in FAMILIES[family] else ["text_encoder"]
    return [CONFIG_ROOT / family / name for name in names]


def test_every_family_folder_is_present():
    shipped = {p.name for p in CONFIG_ROOT.iterdir() if p.is_dir() and (p / "model_index.json").is_file()}
    assert shipped == set(FAMILIES)


@pytest.mark.parametrize("family", FAMILY_IDS)
def test_folder_holds_configs_only(family):
    folder = CONFIG_ROOT / family
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    expected = ["model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json",
                "unet/config.json", "vae/config.json"]
    if "te2" in FAMILIES[family]:
        expected.append("text_encoder_2/config.json")
    assert files == sorted(expected)


@pytest.mark.parametrize("family", FAMILY_IDS)
def test_model_index(family):
    spec = FAMILIES[family]
    index = json.loads((CONFIG_ROOT / family / "model_index.json").read_text())
    assert index["_class_name"] == spec["pipeline"]
    assert "_diffusers_version" in index

    is_xl = "te2" in spec
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKL"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert index["tokenizer"] == ["transformers", "CLIPTokenizer"]
    assert index["feature_extractor"] == [None, None]
    assert index["image_encoder"] == [None, None]
    if is_xl:
        assert index["text_encoder_2"] == ["transformers", "CLIPTextModelWithProjection"]
        assert index["tokenizer_2"] == ["transformers", "CLIPTokenizer"]
        assert index["scheduler"] == ["diffusers", "EulerDiscreteScheduler"]
        # SDXL pipelines take no safety checker; listing one would only trigger an "unexpected" warning.
        assert "safety_checker" not in index and "requires_safety_checker" not in index
    else:
        assert index["safety_checker"] == [None, None]
        assert index["requires_safety_checker"] is False
    library, scheduler_class = index["scheduler"]
    assert library == "diffusers" and hasattr(diffusers, scheduler_class)

    # Every entry must be something the pipeline's __init__ accepts.
    pipeline_cls = getattr(diffusers, spec["pipeline"])
    _, unused, _ = pipeline_cls.extract_init_dict(dict(index))
    assert unused == {}


@pytest.mark.parametrize("family", FAMILY_IDS)
def test_unet_and_vae_build_with_reference_sizes(family):
    spec = FAMILIES[family]
    unet_config = UNet2DConditionModel.load_config(CONFIG_ROOT / family / "unet")
    vae_config = AutoencoderKL.load_config(CONFIG_ROOT / family / "vae")
    with accelerate.init_empty_weights():
        unet = UNet2DConditionModel.from_config(unet_config)
        vae = AutoencoderKL.from_config(vae_config)
    assert next(unet.parameters()).device.type == "meta"

    assert unet.config.in_channels == spec["in_channels"]
    assert unet.config.out_channels == 4
    assert _params(unet) == spec["unet"]
    assert _params(vae) == VAE
    assert vae.config.scaling_factor == pytest.approx(spec["scaling_factor"])

    if "te2" in spec:
        assert unet.config.addition_embed_type == "text_time"
        assert unet.config.cross_attention_dim == 2048
        assert vae.config.force_upcast is True
    elif family.startswith("sd2"):
        assert unet.config.cross_attention_dim == 1024
        assert list(unet.config.attention_head_dim) == [5, 10, 20, 20]
        assert unet.config.use_linear_projection is True
    else:
        assert unet.config.cross_attention_dim == 768


@pytest.mark.parametrize("family", FAMILY_IDS)
def test_text_encoders_build_with_reference_sizes(family):
    spec = FAMILIES[family]
    te_config = CLIPTextConfig.from_pretrained(CONFIG_ROOT / family / "text_encoder")
    with accelerate.init_empty_weights():
        te = CLIPTextModel(te_config)
    assert _params(te) == spec["te"]
    if family.startswith("sd2"):
        assert (te_config.num_hidden_layers, te_config.hidden_size, te_config.hidden_act) == (23, 1024, "gelu")
    else:
        assert (te_config.num_hidden_layers, te_config.hidden_size, te_config.hidden_act) == (12, 768, "quick_gelu")

    if "te2" in spec:
        te2_config = CLIPTextConfig.from_pretrained(CONFIG_ROOT / family / "text_encoder_2")
        with accelerate.init_empty_weights():
            te2 = CLIPTextModelWithProjection(te2_config)
        assert _params(te2) == spec["te2"]
        assert (te2_config.num_hidden_layers, te2_config.hidden_size, te2_config.projection_dim) == (32, 1280, 1280)


@pytest.mark.parametrize("family", FAMILY_IDS)
def test_text_encoder_vocab_size(family):
    for path in _text_encoder_dirs(family):
        assert CLIPTextConfig.from_pretrained(path).vocab_size == 49408, path


@pytest.mark.parametrize("family", FAMILY_IDS)
def test_scheduler_config(family):
    config = EulerDiscreteScheduler.load_config(CONFIG_ROOT / family / "scheduler")
    euler = EulerDiscreteScheduler.from_config(config)
    assert euler.config.prediction_type == FAMILIES[family]["prediction_type"]
    assert euler.config.num_train_timesteps == 1000
    assert euler.config.beta_schedule == "scaled_linear"
    assert euler.config.beta_start == pytest.approx(0.00085)
    assert euler.config.beta_end == pytest.approx(0.012)

    # The scheduler class named in the config loads it too.
    native = getattr(diffusers, config["_class_name"]).from_config(config)
    assert native.config.prediction_type == FAMILIES[family]["prediction_type"]
