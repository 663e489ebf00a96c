"""LoRA tags and textual-inversion names in prompts, as a user writes them, through whole jobs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from modules.models.embeddings import EmbeddingLibrary
from modules.models.hashing import HashCache
from modules.models.loader import LoadedModel
from modules.models.lora import LoraLibrary
from modules.processing.editing.img2img import run_img2img
from modules.processing.editing.img2img_request import Img2ImgRequest
from modules.processing.generation.txt2img import GenerationResult, run_txt2img
from modules.processing.jobs.job import Job
from modules.processing.output.infotext import parse_infotext
from modules.processing.prompts.network_tags import LoraTag, embedding_names_in, lora_tags, parse_lora_tag
from modules.processing.requests import Txt2ImgRequest
from tests.network_files import kohya_lora, write_embedding, write_lora


@pytest.mark.parametrize(("arguments", "expected"), [
    ("film", LoraTag("film", 1.0, 1.0)),
    ("film:0.8", LoraTag("film", 0.8, 0.8)),          # one weight: both parts
    ("film:0.5:1.2", LoraTag("film", 0.5, 1.2)),      # te, unet
    ("film:1:0.7:16", LoraTag("film", 1.0, 0.7)),     # dyn (LyCORIS) is accepted and unused
    ("film:te=0.3:unet=0.9", LoraTag("film", 0.3, 0.9)),
    ("film:0.6:unet=0", LoraTag("film", 0.6, 0.0)),
    ("styles/ink : -0.5", LoraTag("styles/ink", -0.5, -0.5)),
])
def test_lora_tag_arguments_follow_a1111(arguments: str, expected: LoraTag) -> None:
    assert parse_lora_tag(arguments) == expected


def test_bad_tags_become_notices_not_errors() -> None:
    tags, notices = lora_tags(["a <lora:film:strong> b <hypernet:old:1> <lora::1> <lora:ok:0.5> <lora:ok:1>",
                               "# <lora:commented:1>"])
    assert tags == [LoraTag("ok", 0.5, 0.5)]  # the first tag of a name wins
    assert notices == ["Not applied: <lora:film:strong>: weight 'strong' is not a number",
                       "Not applied: <hypernet:old:1> (hypernet networks are not supported; use <lora:…>)",
                       "Not applied: <lora::1> names no LoRA"]


def test_embedding_names_match_whole_words_outside_tags_and_comments() -> None:
    names = ["style", "style-v2", "bad_hands"]
    assert embedding_names_in(["a (style-v2:1.2), bad_hands", "stylevision <lora:style:1>"], names) == [
        "style-v2", "bad_hands"]
    assert embedding_names_in(["[style:cat:3] # style-v2"], names) == ["style"]
    assert embedding_names_in(["nothing"], []) == []


def _with_libraries(model: LoadedModel, root: Path) -> LoadedModel:
    """The shared model with its own LoRA and embedding folders (the pipeline is the same object)."""
    hashes = HashCache(root / "hashes.json")
    return dataclasses.replace(model, loras=LoraLibrary([root / "Lora"], hashes),
                               embeddings=EmbeddingLibrary([root / "embeddings"], hashes))


def _widths(model: LoadedModel) -> tuple[int, ...]:
    encoders = (model.pipeline.text_encoder, getattr(model.pipeline, "text_encoder_2", None))
    return tuple(e.config.hidden_size for e in encoders if e is not None)


def _txt2img(model: LoadedModel, prompt: str, negative: str = "") -> GenerationResult:
    request = Txt2ImgRequest(prompt=prompt, negative_prompt=negative, num_inference_steps=3, width=64, height=64,
                             seed=11)
    return run_txt2img(model, Job(request))


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_lora_job_changes_the_image_and_the_next_job_is_bit_identical_to_before(
        family: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    base_model: LoadedModel = request.getfixturevalue(f"{family}_model")
    write_lora(tmp_path / "Lora" / "styles" / "ink.safetensors", kohya_lora(base_model.pipeline, scale=0.5))
    model = _with_libraries(base_model, tmp_path)

    before = _txt2img(model, "a red circle")
    with_lora = _txt2img(model, "a red circle <lora:ink:0.9>")
    after = _txt2img(model, "a red circle")

    assert with_lora.notices == []
    assert with_lora.images[0].tobytes() != before.images[0].tobytes()
    assert after.images[0].tobytes() == before.images[0].tobytes()
    params = parse_infotext(with_lora.infotexts[0])
    digest = model.loras.short_hash(model.loras.find("ink"))
    assert params["Lora hashes"] == f"ink: {digest}" and len(digest) == 12
    assert "<lora:ink:0.9>" in with_lora.infotexts[0].splitlines()[0]  # the prompt keeps its tag
    assert "Lora hashes" not in parse_infotext(after.infotexts[0])


def test_unknown_lora_is_a_notice_and_the_image_is_made_without_it(sd15_model: LoadedModel,
                                                                   tmp_path: Path) -> None:
    model = _with_libraries(sd15_model, tmp_path)
    plain, missing = _txt2img(model, "a red circle "), _txt2img(model, "a red circle <lora:nowhere:1>")
    assert missing.images[0].tobytes() == plain.images[0].tobytes()
    assert missing.notices == [f"LoRA not found: <lora:nowhere> (looked in {tmp_path / 'Lora'})"]


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_embedding_by_file_name_changes_the_image_and_is_recorded(
        family: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    base_model: LoadedModel = request.getfixturevalue(f"{family}_model")
    write_embedding(tmp_path / "embeddings" / "shiny-style.safetensors", _widths(base_model), vectors=3, scale=2.0)
    model = _with_libraries(base_model, tmp_path)

    plain, styled = _txt2img(model, "a red circle"), _txt2img(model, "a red circle, (shiny-style:1.1)")
    assert styled.notices == []
    assert styled.images[0].tobytes() != plain.images[0].tobytes()
    digest = model.embeddings.short_hash(model.embeddings.find("shiny-style"))
    assert parse_infotext(styled.infotexts[0])["TI hashes"] == f"shiny-style: {digest}"


def test_embedding_for_another_family_is_skipped_with_a_notice(sdxl_model: LoadedModel, tmp_path: Path) -> None:
    write_embedding(tmp_path / "embeddings" / "sd1-only.safetensors", _widths(sdxl_model)[:1])
    model = _with_libraries(sdxl_model, tmp_path)
    result = _txt2img(model, "a red circle sd1-only")
    assert len(result.notices) == 1 and "sd1-only not used" in result.notices[0]
    assert "another model family" in result.notices[0] and "TI hashes" not in parse_infotext(result.infotexts[0])


def test_negative_prompt_embedding_and_lora_and_img2img(sd15_model: LoadedModel, tmp_path: Path) -> None:
    """Embeddings work in the negative prompt; img2img applies LoRAs the same way."""
    write_embedding(tmp_path / "embeddings" / "bad-hands.safetensors", _widths(sd15_model), vectors=2, scale=2.0)
    write_lora(tmp_path / "Lora" / "ink.safetensors", kohya_lora(sd15_model.pipeline, scale=0.5))
    model = _with_libraries(sd15_model, tmp_path)
    plain, negative = _txt2img(model, "a cat", "blurry"), _txt2img(model, "a cat", "blurry, bad-hands")
    assert negative.images[0].tobytes() != plain.images[0].tobytes()
    assert "bad-hands: " in parse_infotext(negative.infotexts[0])["TI hashes"]

    def img2img(prompt: str) -> GenerationResult:
        request = Img2ImgRequest(prompt=prompt, init_images=(plain.images[0],), strength=0.6, num_inference_steps=4,
                                 width=64, height=64, seed=5)
        return run_img2img(model, Job(request))

    before, styled, after = img2img("a cat"), img2img("a cat <lora:ink:1>"), img2img("a cat")
    assert styled.images[0].tobytes() != before.images[0].tobytes()
    assert after.images[0].tobytes() == before.images[0].tobytes()
    assert parse_infotext(styled.infotexts[0])["Lora hashes"].startswith("ink: ")


def test_lowvram_refuses_loras_with_a_notice_instead_of_breaking_its_offload(sd15_model: LoadedModel,
                                                                            tmp_path: Path) -> None:
    from modules.models.memory import MemoryPolicy
    from modules.models.offload import ComponentOffload

    write_lora(tmp_path / "Lora" / "ink.safetensors", kohya_lora(sd15_model.pipeline))
    # The policy is what matters: no hooks are attached, so the model still runs on the CPU.
    model = dataclasses.replace(_with_libraries(sd15_model, tmp_path),
                                offload=ComponentOffload(MemoryPolicy.SEQUENTIAL_OFFLOAD, torch.device("cpu")))
    plain, tagged = _txt2img(model, "a cat "), _txt2img(model, "a cat <lora:ink:1>")
    assert tagged.notices == ["LoRA not applied with --lowvram (use --medvram for LoRAs): <lora:ink>"]
    assert tagged.images[0].tobytes() == plain.images[0].tobytes()
