"""FLUX.1 through the model manager and the engine's jobs, as the studio runs them: each
checkpoint layout found in ``models/Stable-diffusion`` with its parts, loaded, and generating
txt2img, img2img, inpainting and Hires. fix with every flow sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file

from modules.families.base import ModelPartError
from modules.families.flux.parts import AmbiguousPartError, MissingPartError
from modules.models.hashing import HashCache
from modules.models.loader import LoadedModel
from modules.models.manager import ModelManager, Placement
from modules.models.memory import MemoryPolicy
from modules.models.registry import CheckpointRegistry
from modules.processing.editing.img2img import run_img2img
from modules.processing.editing.img2img_inputs import pixels_to_tensor
from modules.processing.editing.img2img_request import Img2ImgRequest
from modules.processing.errors import RequestValidationError
from modules.processing.generation.hires import HiresFix
from modules.processing.generation.txt2img import run_txt2img
from modules.processing.generation.vae import decode_latents, encode_pixels, to_pil_images
from modules.processing.jobs.job import Job
from modules.processing.requests import Txt2ImgRequest
from modules.processing.sampling.flow_samplers import FLOW_SAMPLERS
from modules.processing.sampling.hooks import StepHook, StepParams
from tests.families.flux.tiny_flux_install import TINY_SCHNELL, install_tiny_flux, write_flux_parts
from tests.families.flux.tiny_flux_lora import random_flux_lora, write_flux_lora
from tests.families.flux.tiny_flux_parts import ae_state, t5_state, tiny_flux_vae, tiny_t5

CPU = Placement(torch.device("cpu"), torch.float32)
#: The four layouts, as a user's folder holds them side by side.
NAMES = {"bfl": "flux1-dev", "comfy": "flux1-dev-aio", "diffusers": "FLUX.1-dev", "gguf": "flux1-dev"}


def _manager(root: Path) -> ModelManager:
    models = root / "models"
    registry = CheckpointRegistry([models / "Stable-diffusion"], HashCache(root / "hashes.json"))
    return ModelManager(registry, CPU, vae_roots=[models / "VAE"], text_encoder_roots=[models / "text_encoder"])


@pytest.fixture(scope="module")
def flux_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flux-data")
    for layout, name in NAMES.items():
        install_tiny_flux(root / "models", layout, name=name)
    return root


@pytest.fixture(scope="module")
def manager(flux_root: Path) -> ModelManager:
    return _manager(flux_root)


@pytest.fixture(scope="module")
def flux(manager: ModelManager) -> LoadedModel:
    return manager.get("flux1-dev.safetensors")


def _txt2img(**fields: object) -> Txt2ImgRequest:
    base: dict[str, object] = {"prompt": "a red fox in the snow", "width": 64, "height": 64,
                               "num_inference_steps": 4, "seed": 3, "sampler_name": "Euler", "guidance_scale": 1.0}
    return Txt2ImgRequest(**{**base, **fields})


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def _generate(model: LoadedModel, **fields: object) -> np.ndarray:
    return _pixels(run_txt2img(model, Job(_txt2img(**fields))).images[0])


def test_every_layout_is_listed_as_flux_and_makes_the_same_image(manager: ModelManager) -> None:
    listed = {info.path.name: info for info in manager.registry.items}
    assert set(listed) == {"flux1-dev.safetensors", "flux1-dev-aio.safetensors", "FLUX.1-dev", "flux1-dev-Q8_0.gguf"}
    assert all(info.family is not None and info.family.id == "flux" and info.error is None for info in listed.values())
    images = {name: _generate(manager.get(name)) for name in listed}
    reference = images["flux1-dev.safetensors"]
    assert reference.std() > 10  # a picture, not a flat field
    for name in ("flux1-dev-aio.safetensors", "FLUX.1-dev"):  # the same weights, stored unquantized
        assert np.array_equal(images[name], reference), name
    # Q8_0 rounds every weight to 8 bits per block: close, not equal.
    assert 0 < np.abs(images["flux1-dev-Q8_0.gguf"] - reference).mean() < 6


def test_a_transformer_only_file_runs_with_the_parts_of_its_folders(manager: ModelManager, flux: LoadedModel) -> None:
    assert flux.part_files == ("ae.safetensors", "clip_l.safetensors", "t5xxl_fp16.safetensors")
    assert type(flux.pipeline).__name__ == "FluxPipeline" and flux.family.label == "FLUX.1-dev"
    assert manager.get("flux1-dev-aio.safetensors").part_files == ()  # an all-in-one file carries its own


def test_emphasis_syntax_is_removed_for_t5(flux: LoadedModel) -> None:
    plain = _generate(flux, prompt="a red fox in the snow")
    assert np.array_equal(_generate(flux, prompt="a (red:1.4) fox [in] the snow BREAK"), plain)
    assert not np.array_equal(_generate(flux, prompt="a blue fox in the snow"), plain)


def test_distilled_guidance_and_real_cfg_change_the_image(flux: LoadedModel) -> None:
    default = run_txt2img(flux, Job(_txt2img()))
    assert "Distilled CFG Scale: 3.5" in default.infotexts[0]  # the default is recorded, as Forge does
    plain = _pixels(default.images[0])
    assert np.array_equal(_generate(flux, distilled_cfg_scale=3.5), plain)
    weaker = run_txt2img(flux, Job(_txt2img(distilled_cfg_scale=1.0)))
    assert np.abs(_pixels(weaker.images[0]) - plain).mean() > 1
    assert "Distilled CFG Scale: 1," in weaker.infotexts[0]
    real_cfg = _generate(flux, guidance_scale=3.0, negative_prompt="blurry")
    assert np.abs(real_cfg - plain).mean() > 1


@pytest.mark.parametrize("sampler", [spec.name for spec in FLOW_SAMPLERS])
def test_every_flow_sampler_generates(flux: LoadedModel, sampler: str) -> None:
    image = _generate(flux, sampler_name=sampler)
    assert image.shape == (64, 64, 3) and image.std() > 5


def test_a_sampler_or_schedule_without_a_flow_form_is_refused_by_field(flux: LoadedModel) -> None:
    with pytest.raises(RequestValidationError) as refused:
        run_txt2img(flux, Job(_txt2img(sampler_name="DPM++ SDE")))
    assert refused.value.field == "sampler_name" and "Euler" in refused.value.message
    with pytest.raises(RequestValidationError) as refused:
        run_txt2img(flux, Job(_txt2img(sampler_name="Euler", scheduler="Karras")))
    assert refused.value.field == "scheduler" and "Simple" in refused.value.message


class _DenoisedRecorder(StepHook):
    def __init__(self) -> None:
        self.seen: list[tuple[float, tuple[int, ...]]] = []

    def after_denoise(self, step: StepParams, denoised: torch.Tensor) -> None:
        self.seen.append((float(step.sigma), tuple(denoised.shape)))


def test_step_hooks_see_flux_latents_sigma_and_denoised(flux: LoadedModel) -> None:
    recorder = _DenoisedRecorder()
    run_txt2img(flux, Job(_txt2img(), hooks=[recorder]))
    sigmas = [sigma for sigma, _ in recorder.seen]
    assert [shape for _, shape in recorder.seen] == [(1, 16, 8, 8)] * 4
    assert sigmas == sorted(sigmas, reverse=True) and 0 < sigmas[-1] < sigmas[0] <= 1  # flow time, 1 -> 0


def _picture() -> Image.Image:
    x = np.linspace(0, 255, 64, dtype=np.uint8)
    image = Image.fromarray(np.stack([np.tile(x, (64, 1)), np.tile(x[::-1], (64, 1)), np.full((64, 64), 90, np.uint8)],
                                     axis=-1))
    ImageDraw.Draw(image).rectangle((10, 10, 25, 30), fill=(20, 20, 20))
    return image


def _img2img(model: LoadedModel, **fields: object) -> np.ndarray:
    base: dict[str, object] = {"prompt": "a red fox", "width": 64, "height": 64, "num_inference_steps": 4, "seed": 3,
                               "sampler_name": "Euler", "guidance_scale": 1.0, "init_images": (_picture(),)}
    return _pixels(run_img2img(model, Job(Img2ImgRequest(**{**base, **fields}))).images[0])


def _through_the_vae(model: LoadedModel, image: Image.Image) -> np.ndarray:
    """The input as the tiny random VAE gives it back: what strength 0 would keep."""
    latents = encode_pixels(model.pipeline.vae, pixels_to_tensor(image))
    return _pixels(to_pil_images(decode_latents(model.pipeline.vae, latents))[0])


def test_img2img_strength_decides_how_close_the_image_stays(flux: LoadedModel) -> None:
    source = _through_the_vae(flux, _picture())
    low, high = _img2img(flux, strength=0.25), _img2img(flux, strength=1.0)
    assert np.abs(low - source).mean() < np.abs(high - source).mean()


def test_inpainting_repaints_the_mask_and_keeps_the_rest(flux: LoadedModel) -> None:
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((32, 32, 63, 63), fill=255)
    out, source = _img2img(flux, mask=mask, mask_blur_x=0, mask_blur_y=0, strength=1.0), _pixels(_picture())
    assert np.abs(out[:24, :24] - source[:24, :24]).mean() < 3  # far from the mask: the input (through the VAE)
    assert np.abs(out[40:, 40:] - source[40:, 40:]).mean() > 10  # the masked area is new


def test_hires_fix_runs_a_second_flow_pass_at_the_larger_size(flux: LoadedModel) -> None:
    hires = HiresFix(upscaler="Latent", scale=2.0, denoising_strength=0.5)
    result = run_txt2img(flux, Job(_txt2img(hires=hires)))
    assert result.images[0].size == (128, 128) and _pixels(result.images[0]).std() > 5
    assert "Hires upscale: 2" in result.infotexts[0]


def test_hires_distilled_guidance_steers_only_the_second_pass(flux: LoadedModel) -> None:
    # Forge's "Hires Distilled CFG Scale": the FLUX.1-dev guidance input of the hires pass alone.
    def run(**hires_fields: object) -> tuple[np.ndarray, str]:
        hires = HiresFix(upscaler="Latent", scale=2.0, denoising_strength=0.6, **hires_fields)
        result = run_txt2img(flux, Job(_txt2img(hires=hires)))
        return _pixels(result.images[0]), result.infotexts[0]

    plain, plain_text = run()
    assert "Hires Distilled CFG Scale" not in plain_text
    same, _ = run(distilled_cfg_scale=3.5)  # the first pass's default
    assert np.array_equal(same, plain)
    other, other_text = run(distilled_cfg_scale=0.5)
    assert np.abs(other - plain).mean() > 0.5
    assert "Hires Distilled CFG Scale: 0.5" in other_text and "Distilled CFG Scale: 3.5" in other_text


def test_schnell_is_recognised_and_runs_without_distilled_guidance(tmp_path: Path) -> None:
    install_tiny_flux(tmp_path / "models", "bfl", TINY_SCHNELL, name="flux1-schnell")
    model = _manager(tmp_path).get()
    assert model.family.id == "flux_schnell" and model.family.defaults.steps == 4
    assert model.scheduler_config["use_dynamic_shifting"] is False
    result = run_txt2img(model, Job(_txt2img(distilled_cfg_scale=2.0)))
    assert _pixels(result.images[0]).std() > 5
    # schnell has no guidance input: the value is dropped, not recorded as if it had been used
    assert "Distilled CFG Scale" not in result.infotexts[0]


def test_a_missing_part_names_the_file_and_folder_and_blocks_nothing(tmp_path: Path) -> None:
    install_tiny_flux(tmp_path / "models", "bfl")
    (tmp_path / "models" / "text_encoder" / "t5xxl_fp16.safetensors").unlink()
    manager = _manager(tmp_path)
    with pytest.raises(MissingPartError, match=r"t5xxl_fp16\.safetensors .*models/text_encoder/") as missing:
        manager.get()
    assert isinstance(missing.value, ModelPartError) and missing.value.part == "t5xxl"
    info = manager.registry.find("flux1-dev")
    assert manager.registry.blocked(info) is None  # the checkpoint is fine: once the file is there, it loads
    write_flux_parts(tmp_path / "models")
    assert manager.get().family.id == "flux"


def test_two_text_encoders_of_a_kind_are_chosen_between_by_name(tmp_path: Path) -> None:
    install_tiny_flux(tmp_path / "models", "bfl")
    other = tmp_path / "models" / "text_encoder" / "t5xxl_other.safetensors"
    save_file(t5_state(tiny_t5(5)), str(other))
    manager = _manager(tmp_path)
    with pytest.raises(AmbiguousPartError) as ambiguous:
        manager.get()
    assert set(ambiguous.value.candidates) == {"t5xxl_fp16.safetensors", "t5xxl_other.safetensors"}
    first = manager.get(modules=["t5xxl_fp16.safetensors"])
    second = manager.get(modules=["t5xxl_other"])  # by name without the extension, as Forge accepts
    assert first is not second and second.part_files[-1] == "t5xxl_other.safetensors"
    assert not np.array_equal(_generate(first), _generate(second))
    assert "t5xxl_other.safetensors" in manager.part_file_names()


def test_a1111s_vae_setting_chooses_flux_vae_when_no_modules_are_chosen(tmp_path: Path) -> None:
    install_tiny_flux(tmp_path / "models", "bfl")
    other = tmp_path / "models" / "VAE" / "ae_other.safetensors"
    save_file(ae_state(tiny_flux_vae(9)), str(other))
    manager = _manager(tmp_path)
    with pytest.raises(AmbiguousPartError):
        manager.get(vae="Automatic")  # two VAEs and nothing chosen
    # sd_vae is what A1111 clients set (override_settings); FLUX takes it as its VAE part
    by_setting = manager.get(vae="ae_other.safetensors")
    assert by_setting.part_files[0] == "ae_other.safetensors"
    by_modules = manager.get(vae="ae_other.safetensors", modules=["ae"])  # the modules, when chosen, decide
    assert by_modules.part_files[0] == "ae.safetensors"


def test_a_lora_in_the_prompt_changes_a_flux_image_and_leaves_no_trace(tmp_path: Path) -> None:
    install_tiny_flux(tmp_path / "models", "bfl")
    models = tmp_path / "models"
    registry = CheckpointRegistry([models / "Stable-diffusion"], HashCache(tmp_path / "hashes.json"))
    manager = ModelManager(registry, CPU, vae_roots=[models / "VAE"], text_encoder_roots=[models / "text_encoder"],
                           lora_roots=[models / "Lora"])
    model = manager.get()
    write_flux_lora(models / "Lora" / "fox-style.safetensors", random_flux_lora(model.pipeline, scale=0.5), "kohya",
                    model.pipeline)
    manager.loras.refresh()
    plain = _generate(model)
    styled = run_txt2img(model, Job(_txt2img(prompt="a red fox in the snow <lora:fox-style:1>")))
    assert np.abs(_pixels(styled.images[0]) - plain).mean() > 1
    assert "Lora hashes: \"fox-style: " in styled.infotexts[0] and styled.notices == []
    assert np.array_equal(_generate(model), plain)  # unloaded after the job: the model is as before


@pytest.mark.parametrize("memory", [MemoryPolicy.MODEL_OFFLOAD, MemoryPolicy.SEQUENTIAL_OFFLOAD])
def test_medvram_and_lowvram_offload_every_flux_part_and_keep_the_image(flux_root: Path, flux: LoadedModel,
                                                                        memory: MemoryPolicy) -> None:
    models = flux_root / "models"
    registry = CheckpointRegistry([models / "Stable-diffusion"], HashCache(flux_root / f"hashes-{memory.value}.json"))
    offloaded = ModelManager(registry, Placement(torch.device("cpu"), torch.float32, memory),
                             vae_roots=[models / "VAE"], text_encoder_roots=[models / "text_encoder"])
    model = offloaded.get("flux1-dev.safetensors")
    assert model.offload is not None and model.offload.policy is memory
    for part in ("transformer", "text_encoder", "text_encoder_2", "vae"):
        assert hasattr(getattr(model.pipeline, part), "_hf_hook"), part  # each part moves to the GPU only to run
    assert np.array_equal(_generate(model), _generate(flux))
