"""The prompt preview and token counter: what a prompt will do, before generating."""

from __future__ import annotations

from pathlib import Path

import torch

from modules.models.embeddings import EmbeddingLibrary
from modules.models.hashing import HashCache
from modules.models.loader import LoadedModel, build_clip_tokenizer
from modules.models.lora import LoraLibrary
from modules.processing.generation.txt2img import run_txt2img
from modules.processing.jobs.job import Job
from modules.processing.prompts.prompt_preview import preview_prompt, token_counter
from modules.processing.requests import Txt2ImgRequest
from tests.network_files import write_embedding, write_lora

TOKENIZER = build_clip_tokenizer()


def test_preview_shows_schedule_sub_prompts_weights_and_chunks() -> None:
    plan = preview_prompt(TOKENIZER, "a [red:blue:0.5] cat :1.2 AND (snow:1.3) BREAK sky <lora:film:0.8>", 20)
    first, second = plan["sub_prompts"]
    assert first["weight"] == 1.2
    assert [(s["until_step"], s["text"]) for s in first["schedule"]] == [(10, "a red cat"), (20, "a blue cat")]
    assert first["schedule"][0]["tokens"] == 3 and first["schedule"][0]["chunks"] == 1
    step = second["schedule"][0]
    assert step["chunks"] == 2 and ["snow", 1.3] in step["fragments"] and ["BREAK", -1.0] in step["fragments"]
    assert plan["extra_networks"] == [{"kind": "lora", "name": "film", "te": 0.8, "unet": 0.8, "found": False}]
    assert plan["notes"] == ["LoRA not found: <lora:film>"]


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
    assert with_tag.notices == ["LoRA not found: <lora:film> (no LoRA folder is set)"] and not without.notices


def test_preview_looks_up_loras_and_counts_embedding_vectors_as_tokens(tmp_path: Path) -> None:
    hashes = HashCache(tmp_path / "hashes.json")
    write_lora(tmp_path / "Lora" / "ink.safetensors", {"x.alpha": torch.tensor(1.0)})
    write_embedding(tmp_path / "embeddings" / "glow.safetensors", (768,), vectors=5)
    (tmp_path / "embeddings" / "old.pt").write_bytes(b"pickle")
    loras = LoraLibrary([tmp_path / "Lora"], hashes)
    embeddings = EmbeddingLibrary([tmp_path / "embeddings"], hashes)

    plan = preview_prompt(TOKENIZER, "a glow cat <lora:ink:0.5:1> <lora:gone> old", 20, loras, embeddings)
    assert plan["extra_networks"] == [{"kind": "lora", "name": "ink", "te": 0.5, "unet": 1.0, "found": True},
                                      {"kind": "lora", "name": "gone", "te": 1.0, "unet": 1.0, "found": False}]
    assert plan["embeddings"] == [{"name": "glow", "vectors": 5}]
    assert plan["sub_prompts"][0]["schedule"][0]["tokens"] == 1 + 5 + 1 + 1  # a, glow x5, cat, old
    assert plan["notes"][0] == "LoRA not found: <lora:gone>"
    assert plan["notes"][1].startswith("Embedding old cannot be used") and "--allow-pickle" in plan["notes"][1]
