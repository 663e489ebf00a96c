"""Weighted prompts to embeddings with A1111's chunking and emphasis arithmetic."""

from __future__ import annotations

import pytest
import torch

from modules.models.loader import LoadedModel, build_clip_tokenizer
from modules.processing.generation.txt2img import run_txt2img
from modules.processing.jobs.job import Job
from modules.processing.prompts.conditioning import encode_weighted_prompt
from modules.processing.prompts.prompt_encoding import CHUNK_TOKENS, apply_emphasis, chunk_tokens
from modules.processing.prompts.prompt_syntax import parse_emphasis
from modules.processing.requests import Txt2ImgRequest

TOKENIZER = build_clip_tokenizer()
BOS, EOS, COMMA = 49406, 49407, 267


def _chunks(text: str):
    return chunk_tokens(TOKENIZER, parse_emphasis(text))


def test_short_prompt_is_one_chunk_laid_out_like_the_tokenizer() -> None:
    chunks = _chunks("a (red:1.5) circle")
    assert len(chunks.ids) == 1 and len(chunks.ids[0]) == 77
    assert chunks.ids[0] == TOKENIZER("a red circle", padding="max_length", max_length=77).input_ids
    assert chunks.weights[0][:5] == [1.0, 1.0, 1.5, 1.0, 1.0]


def test_break_and_length_start_new_chunks() -> None:
    assert len(_chunks("a cat BREAK a hat").ids) == 2
    assert _chunks("a cat BREAK a hat").ids[1][:3] == [BOS, 320, 3801]
    words = " ".join(["cat"] * 80)  # 80 tokens, no comma: 75 + 5
    chunks = _chunks(words)
    assert len(chunks.ids) == 2 and chunks.ids[1][6] == EOS
    assert _chunks("").ids == [[BOS, EOS] + [EOS] * 75]


def test_comma_backtracking_moves_the_last_phrase_to_the_next_chunk() -> None:
    text = " ".join(["cat"] * 70) + ", " + " ".join(["dog"] * 10)  # the chunk fills 4 tokens after the comma
    chunks = _chunks(text)
    first = chunks.ids[0]
    assert first[71] == COMMA and first[72] == EOS  # cut right after the comma
    assert chunks.ids[1][1:11] == [1929] * 10  # all ten "dog" tokens moved together
    far = " ".join(["cat"] * 40) + ", " + " ".join(["dog"] * 40)  # comma 34 tokens back: no backtrack
    assert _chunks(far).ids[0][CHUNK_TOKENS] == 1929


def test_emphasis_modes() -> None:
    hidden = torch.rand(1, 4, 8) + 0.5
    weights = torch.tensor([[1.0, 1.5, 1.0, 0.5]])
    original = apply_emphasis(hidden, weights, "Original")
    assert torch.allclose(original.mean(), hidden.mean())
    assert torch.equal(apply_emphasis(hidden, weights, "No norm"), hidden * weights.unsqueeze(-1))
    with pytest.raises(ValueError, match="Original"):
        apply_emphasis(hidden, weights, "Loud")


@pytest.mark.parametrize("model_name", ["sd15_model", "sdxl_model"])
def test_plain_prompts_encode_as_before_and_weights_change_them(request: pytest.FixtureRequest,
                                                                 model_name: str) -> None:
    pipeline = request.getfixturevalue(model_name).pipeline
    plain = encode_weighted_prompt(pipeline, "a red circle")
    reference = pipeline.encode_prompt(["a red circle"], device="cpu", num_images_per_prompt=1,
                                       do_classifier_free_guidance=False)[0]
    assert torch.equal(plain.embeds, reference)
    weighted = encode_weighted_prompt(pipeline, "a (red:1.5) circle")
    assert weighted.embeds.shape == plain.embeds.shape and not torch.equal(weighted.embeds, plain.embeds)
    long = encode_weighted_prompt(pipeline, ", ".join(["a red circle"] * 40), batch_size=2)
    assert long.embeds.shape[:2] == (2, 77 * 3)
    if plain.pooled is not None:
        assert long.pooled.shape[0] == 2


def test_long_prompt_and_short_negative_generate_together(sd15_model: LoadedModel) -> None:
    request = Txt2ImgRequest(prompt=", ".join(["a red circle"] * 40) + " BREAK blue", negative_prompt="ugly",
                             num_inference_steps=2, width=64, height=64, seed=1, sampler_name="Euler a")
    short = run_txt2img(sd15_model, Job(Txt2ImgRequest(prompt="a red circle", negative_prompt="ugly",
                                                       num_inference_steps=2, width=64, height=64, seed=1,
                                                       sampler_name="Euler a")))
    result = run_txt2img(sd15_model, Job(request))
    assert result.images[0].size == (64, 64)
    assert result.images[0].tobytes() != short.images[0].tobytes()


def test_emphasis_mode_changes_weighted_prompts_and_is_recorded(sd15_model: LoadedModel) -> None:
    from modules.processing.errors import RequestValidationError
    from modules.processing.intake.api_fields import txt2img_request_from_api
    from modules.processing.output.request_infotext import request_from_infotext

    base = {"prompt": "a (red:1.8) circle", "steps": 2, "width": 64, "height": 64, "seed": 4}
    original = run_txt2img(sd15_model, Job(txt2img_request_from_api(base)))
    no_norm = run_txt2img(sd15_model, Job(txt2img_request_from_api(
        {**base, "override_settings": {"emphasis": "No norm"}})))
    assert original.images[0].tobytes() != no_norm.images[0].tobytes()
    assert "Emphasis" not in original.infotexts[0] and "Emphasis: No norm" in no_norm.infotexts[0]
    assert request_from_infotext(no_norm.infotexts[0]).emphasis == "No norm"
    with pytest.raises(RequestValidationError) as error:
        txt2img_request_from_api({**base, "override_settings": {"emphasis": "Loud"}})
    assert error.value.field == "emphasis"


def test_embedding_takes_one_token_per_vector_and_is_never_split_between_chunks() -> None:
    vectors = torch.randn(4, 768)
    chunks = chunk_tokens(TOKENIZER, parse_emphasis("a (kitty:1.2) b"), {"kitty": vectors})
    assert chunks.ids[0][:8] == [BOS, 320, 0, 0, 0, 0, 321, EOS]  # "a", 4 placeholders, "b"
    assert chunks.weights[0][2:6] == [1.2] * 4
    assert len(chunks.vectors[0]) == 1 and chunks.vectors[0][0][0] == 2
    assert torch.equal(chunks.vectors[0][0][1], vectors)

    # 73 tokens leave 2 places: a 4-vector embedding starts the next chunk instead of straddling.
    chunks = chunk_tokens(TOKENIZER, parse_emphasis("cat " * 73 + "kitty"), {"kitty": vectors})
    assert len(chunks.ids) == 2 and chunks.vectors[0] == [] and chunks.vectors[1][0][0] == 1
    # A comma backtrack carries the embedding (and its position) into the next chunk.
    chunks = chunk_tokens(TOKENIZER, parse_emphasis("cat " * 60 + ", " + "kitty " + "dog " * 14), {"kitty": vectors})
    assert chunks.ids[1][1:5] == [0, 0, 0, 0] and chunks.vectors[1][0][0] == 1 and chunks.vectors[0] == []


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_an_embedding_of_a_words_own_vectors_encodes_exactly_like_the_word(
        family: str, request: pytest.FixtureRequest) -> None:
    """The vectors go in where the tokens' input vectors would: an embedding holding the
    token vectors of "red circle" must give the same conditioning as writing "red circle"."""
    from modules.models.embeddings import Embedding

    model: LoadedModel = request.getfixturevalue(f"{family}_model")
    pipeline = model.pipeline
    ids = torch.tensor(TOKENIZER("red circle", add_special_tokens=False).input_ids)
    encoders = [e for e in (pipeline.text_encoder, getattr(pipeline, "text_encoder_2", None)) if e is not None]
    with torch.inference_mode():
        vectors = tuple(e.get_input_embeddings()(ids).clone() for e in encoders)
    embedding = Embedding("my-thing", vectors)

    written = encode_weighted_prompt(pipeline, "a (red circle:1.3), sky")
    embedded = encode_weighted_prompt(pipeline, "a (my-thing:1.3), sky", embeddings={"my-thing": embedding})
    torch.testing.assert_close(embedded.embeds, written.embeds, rtol=0, atol=1e-6)
    if written.pooled is not None:
        torch.testing.assert_close(embedded.pooled, written.pooled, rtol=0, atol=1e-6)
    # And the encoder is left as it was: the name alone is ordinary text again.
    plain = encode_weighted_prompt(pipeline, "a (my-thing:1.3), sky")
    assert not torch.allclose(plain.embeds, embedded.embeds)
    assert torch.equal(encode_weighted_prompt(pipeline, "a (my-thing:1.3), sky").embeds, plain.embeds)
