"""The prompt preview and token counter: what a prompt will do, before generating."""

from __future__ import annotations

from modules.models.loader import LoadedModel, build_clip_tokenizer
from modules.processing.job import Job
from modules.processing.prompt_preview import preview_prompt, token_counter
from modules.processing.requests import Txt2ImgRequest
from modules.processing.txt2img import run_txt2img

TOKENIZER = build_clip_tokenizer()


def test_preview_shows_schedule_sub_prompts_weights_and_chunks() -> None:
    plan = preview_prompt(TOKENIZER, "a [red:blue:0.5] cat :1.2 AND (snow:1.3) BREAK sky <lora:film:0.8>", 20)
    first, second = plan["sub_prompts"]
    assert first["weight"] == 1.2
    assert [(s["until_step"], s["text"]) for s in first["schedule"]] == [(10, "a red cat"), (20, "a blue cat")]
    assert first["schedule"][0]["tokens"] == 3 and first["schedule"][0]["chunks"] == 1
    step = second["schedule"][0]
    assert step["chunks"] == 2 and ["snow", 1.3] in step["fragments"] and ["BREAK", -1.0] in step["fragments"]
    assert plan["extra_networks"] == [{"kind": "lora", "name": "film"}] and "not supported yet" in plan["notes"][0]


def test_token_counter_counts_chunks_the_way_encoding_does() -> None:
    assert token_counter(TOKENIZER, "") == "0/75"
    assert token_counter(TOKENIZER, "a cat BREAK a hat") == "4/150"
    assert token_counter(TOKENIZER, "[a cat|a very very very long cat]") == "6/75"  # the longest step
    assert token_counter(TOKENIZER, "(cat:1.5) " * 80) == "80/150"


def test_extra_networks_are_not_encoded_and_are_reported(sd15_model: LoadedModel) -> None:
    def run(prompt: str):
        request = Txt2ImgRequest(prompt=prompt, num_inference_steps=2, width=64, height=64, seed=3)
        return run_txt2img(sd15_model, Job(request))

    with_tag, without = run("a red circle <lora:film:0.8>"), run("a red circle ")
    assert with_tag.images[0].tobytes() == without.images[0].tobytes()
    assert with_tag.notices and "<lora:film:0.8>" in with_tag.notices[0] and not without.notices
