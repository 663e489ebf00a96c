"""The shipped T5 tokenizer gives T5's own ids, offline, at FLUX's lengths; CLIP-L's is SD's."""

from __future__ import annotations

import hashlib

import pytest

from modules.families.flux.tokenizers import (
    CLIP_MAX_LENGTH,
    T5_MAX_LENGTH,
    T5_TOKENIZER_FILE,
    build_flux_clip_tokenizer,
    build_t5_tokenizer,
    clip_token_ids,
    t5_token_ids,
)

# What T5's SentencePiece model gives (the ids FLUX's T5-XXL was trained on): "▁", "a",
# "▁photo", "▁of", "▁", "a", "▁cat", "</s>".
PHOTO_OF_A_CAT = [3, 9, 1202, 13, 3, 9, 1712, 1]


@pytest.fixture(scope="module")
def t5_tokenizer():
    return build_t5_tokenizer()


def test_the_shipped_file_is_the_one_its_readme_names() -> None:
    digest = hashlib.sha256(T5_TOKENIZER_FILE.read_bytes()).hexdigest()
    assert digest == "f5dfec163765e18e270537fe896c49f5fad74db1525641d9b255a3008b999596"
    assert digest in (T5_TOKENIZER_FILE.parent / "README.md").read_text(encoding="utf-8")


def test_known_sentence_gives_t5_ids(t5_tokenizer) -> None:
    assert t5_tokenizer("a photo of a cat").input_ids == PHOTO_OF_A_CAT
    assert len(t5_tokenizer) == 32100
    assert (t5_tokenizer.pad_token_id, t5_tokenizer.eos_token_id, t5_tokenizer.unk_token_id) == (0, 1, 2)
    # The sentinels are single tokens, numbered down from 32099 as in T5.
    assert t5_tokenizer.convert_tokens_to_ids(["<extra_id_0>", "<extra_id_99>"]) == [32099, 32000]


@pytest.mark.parametrize("variant", ["dev", "schnell"])
def test_prompts_pad_to_the_variants_length(t5_tokenizer, variant: str) -> None:
    length = T5_MAX_LENGTH[variant]
    ids = t5_token_ids(t5_tokenizer, ["a photo of a cat", ""], length)
    assert ids.shape == (2, length)
    assert ids[0, :8].tolist() == PHOTO_OF_A_CAT and not ids[0, 8:].any()  # padded with 0
    assert ids[1, 0] == 1 and not ids[1, 1:].any()  # an empty prompt is just </s>


def test_long_prompts_are_cut_keeping_the_end_token(t5_tokenizer) -> None:
    ids = t5_token_ids(t5_tokenizer, ["cat " * 600], T5_MAX_LENGTH["schnell"])
    assert ids.shape == (1, 256)
    assert ids[0, -1] == 1 and (ids[0, :-1] == 1712).all()
    assert T5_MAX_LENGTH == {"dev": 512, "schnell": 256}


def test_clip_tokenizer_is_sds_77_token_one() -> None:
    ids = clip_token_ids(build_flux_clip_tokenizer(), ["a photo of a cat"])
    assert ids.shape == (1, CLIP_MAX_LENGTH)
    # <|startoftext|> a photo of a cat <|endoftext|>, then padded with <|endoftext|>.
    assert ids[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert (ids[0, 7:] == 49407).all()
