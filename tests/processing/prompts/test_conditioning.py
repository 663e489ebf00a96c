"""Prompt encoding matches what the models were trained with (diffusers' reference encoding)."""

from __future__ import annotations

import pytest
import torch

from modules.models.loader import LoadedModel
from modules.processing.generation.txt2img import run_txt2img
from modules.processing.jobs.job import Job
from modules.processing.prompts.conditioning import encode_weighted_prompt
from modules.processing.requests import Txt2ImgRequest

PROMPTS = ["a large red circle on a blue background", ""]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_sd15_encoding_equals_diffusers(sd15_model: LoadedModel, prompt: str) -> None:
    ours = encode_weighted_prompt(sd15_model.pipeline, prompt)
    reference, _ = sd15_model.pipeline.encode_prompt([prompt], "cpu", 1, False)
    assert ours.pooled is None
    assert torch.equal(ours.embeds, reference)


def test_sd15_clip_skip_uses_an_earlier_layer_with_the_final_norm(sd15_model: LoadedModel) -> None:
    prompt = PROMPTS[0]
    skip2 = encode_weighted_prompt(sd15_model.pipeline, prompt, clip_skip=2)
    ids = sd15_model.pipeline.tokenizer([prompt], padding="max_length", max_length=77, return_tensors="pt").input_ids
    encoder = sd15_model.pipeline.text_encoder
    hidden = encoder(ids, output_hidden_states=True).hidden_states[-2]
    assert torch.equal(skip2.embeds, encoder.final_layer_norm(hidden))
    assert not torch.equal(skip2.embeds, encode_weighted_prompt(sd15_model.pipeline, prompt).embeds)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_sdxl_encoding_equals_diffusers(sdxl_model: LoadedModel, prompt: str) -> None:
    ours = encode_weighted_prompt(sdxl_model.pipeline, prompt)
    embeds, _, pooled, _ = sdxl_model.pipeline.encode_prompt([prompt], device="cpu",
                                                             do_classifier_free_guidance=False)
    assert torch.equal(ours.embeds, embeds)
    assert torch.equal(ours.pooled, pooled)


def test_clip_skip_generates_and_is_recorded(sd15_model: LoadedModel) -> None:
    request = Txt2ImgRequest(prompt="x", width=64, height=64, num_inference_steps=2, seed=1, clip_skip=2)
    result = run_txt2img(sd15_model, Job(request))
    assert "Clip skip: 2" in result.infotexts[0]
