"""Prompt encoding matches what the models were trained with (diffusers' reference encoding)."""

from __future__ import annotations

import torch

from modules.models.loader import LoadedModel
from modules.processing.conditioning import encode_prompts
from modules.processing.job import Job
from modules.processing.requests import Txt2ImgRequest
from modules.processing.txt2img import run_txt2img

PROMPTS = ["a large red circle on a blue background", ""]


def test_sd15_encoding_equals_diffusers(sd15_model: LoadedModel) -> None:
    ours = encode_prompts(sd15_model.pipeline, PROMPTS)
    reference, _ = sd15_model.pipeline.encode_prompt(PROMPTS, "cpu", 1, False)
    assert ours.pooled is None
    assert torch.equal(ours.embeds, reference)


def test_sd15_clip_skip_uses_an_earlier_layer_with_the_final_norm(sd15_model: LoadedModel) -> None:
    skip2 = encode_prompts(sd15_model.pipeline, PROMPTS, clip_skip=2)
    ids = sd15_model.pipeline.tokenizer(PROMPTS, padding="max_length", max_length=77, return_tensors="pt").input_ids
    encoder = sd15_model.pipeline.text_encoder
    hidden = encoder(ids, output_hidden_states=True).hidden_states[-2]
    assert torch.equal(skip2.embeds, encoder.final_layer_norm(hidden))
    assert not torch.equal(skip2.embeds, encode_prompts(sd15_model.pipeline, PROMPTS).embeds)


def test_sdxl_encoding_equals_diffusers(sdxl_model: LoadedModel) -> None:
    ours = encode_prompts(sdxl_model.pipeline, PROMPTS)
    embeds, _, pooled, _ = sdxl_model.pipeline.encode_prompt(PROMPTS, device="cpu", do_classifier_free_guidance=False)
    assert torch.equal(ours.embeds, embeds)
    assert torch.equal(ours.pooled, pooled)


def test_clip_skip_generates_and_is_recorded(sd15_model: LoadedModel) -> None:
    request = Txt2ImgRequest(prompt="x", width=64, height=64, num_inference_steps=2, seed=1, clip_skip=2)
    result = run_txt2img(sd15_model, Job(request))
    assert "Clip skip: 2" in result.infotexts[0]
