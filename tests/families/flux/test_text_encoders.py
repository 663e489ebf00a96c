"""CLIP-L and T5 load from the files users have (own files, fp8, all-in-one) and encode a
prompt exactly as the same weights built directly do."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modules.families.flux.t5 import load_t5_encoder
from modules.families.flux.text_encoders import FluxTextEncoders, load_clip_l
from modules.families.flux.tokenizers import build_flux_clip_tokenizer, build_t5_tokenizer, clip_token_ids
from modules.models.files import ModelFileError
from tests.families.flux.tiny_flux_parts import (
    CLIP_PREFIX,
    CLIP_WIDTH,
    T5_PREFIX,
    T5_WIDTH,
    TinyFluxParts,
    fp8_rounded,
    t5_state,
    write_tiny_flux_parts,
)

PROMPTS = ["a photo of a cat", "an astronaut riding a horse on the moon, oil painting"]


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> TinyFluxParts:
    return write_tiny_flux_parts(tmp_path_factory.mktemp("flux_models"))


@pytest.fixture(scope="module")
def clip_ids() -> torch.Tensor:
    return clip_token_ids(build_flux_clip_tokenizer(), PROMPTS)


@pytest.fixture(scope="module")
def t5_ids() -> torch.Tensor:
    return build_t5_tokenizer()(PROMPTS, padding="max_length", max_length=32, return_tensors="pt").input_ids


@pytest.mark.parametrize("source", ["own file", "all-in-one"])
def test_clip_l_pools_as_the_model_it_was_saved_from(parts: TinyFluxParts, clip_ids: torch.Tensor,
                                                     source: str) -> None:
    path, prefix = (parts.clip_file, None) if source == "own file" else (parts.all_in_one, CLIP_PREFIX)
    model = load_clip_l(path, prefix, dtype=torch.float32)
    assert model.config.hidden_size == CLIP_WIDTH and model.config.num_hidden_layers == 2
    assert model.config.max_position_embeddings == 77 and model.config.hidden_act == "quick_gelu"
    pooled = model(clip_ids).pooler_output
    assert pooled.shape == (2, CLIP_WIDTH)
    torch.testing.assert_close(pooled, parts.clip_l(clip_ids).pooler_output, rtol=0, atol=1e-6)
    assert not torch.allclose(pooled[0], pooled[1])


def test_clip_l_found_in_an_all_in_one_file_without_a_prefix_given(parts: TinyFluxParts,
                                                                   clip_ids: torch.Tensor) -> None:
    model = load_clip_l(parts.all_in_one, dtype=torch.float32)
    torch.testing.assert_close(model(clip_ids).pooler_output, parts.clip_l(clip_ids).pooler_output, rtol=0, atol=1e-6)


@pytest.mark.parametrize("source", ["t5xxl_fp16", "all-in-one"])
def test_t5_encodes_as_the_model_it_was_saved_from(parts: TinyFluxParts, t5_ids: torch.Tensor, source: str) -> None:
    path = parts.t5_fp16_file if source == "t5xxl_fp16" else parts.all_in_one
    model = load_t5_encoder(path, T5_PREFIX if source == "all-in-one" else None, dtype=torch.float32)
    config = model.config
    assert (config.d_model, config.num_heads, config.d_kv, config.d_ff, config.num_layers) == (T5_WIDTH, 4, 8, 48, 2)
    assert config.vocab_size == 32128 and config.is_gated_act and config.dense_act_fn == "gelu_new"
    hidden = model(t5_ids).last_hidden_state
    assert hidden.shape == (2, 32, T5_WIDTH)
    torch.testing.assert_close(hidden, parts.t5(t5_ids).last_hidden_state, rtol=0, atol=1e-6)


def test_fp8_t5_keeps_fp8_weights_and_computes_in_the_compute_dtype(parts: TinyFluxParts,
                                                                    t5_ids: torch.Tensor) -> None:
    model = load_t5_encoder(parts.t5_fp8_file, dtype=torch.float32)
    attention = model.encoder.block[0].layer[0].SelfAttention
    feed_forward = model.encoder.block[1].layer[1].DenseReluDense
    stored = [attention.q.weight, attention.o.weight, feed_forward.wi_0.weight, feed_forward.wo.weight]
    assert all(weight.dtype == torch.float8_e4m3fn for weight in stored)
    # Norms, the embedding and the position bias are kept in the compute dtype.
    assert model.shared.weight.dtype == torch.float32 and model.encoder.final_layer_norm.weight.dtype == torch.float32
    assert attention.relative_attention_bias.weight.dtype == torch.float32
    hidden = model(t5_ids).last_hidden_state
    assert hidden.dtype == torch.float32
    torch.testing.assert_close(hidden, fp8_rounded(parts.t5)(t5_ids).last_hidden_state, rtol=0, atol=1e-5)
    # Each layer went back to fp8 storage after its forward.
    assert all(weight.dtype == torch.float8_e4m3fn for weight in stored)


def test_both_encoders_make_fluxs_conditioning(parts: TinyFluxParts) -> None:
    encoders = FluxTextEncoders(load_clip_l(parts.clip_file, dtype=torch.float32), build_flux_clip_tokenizer(),
                                load_t5_encoder(parts.t5_fp16_file, dtype=torch.float32), build_t5_tokenizer())
    embeds = encoders.encode(PROMPTS, max_length=256)
    assert embeds.prompt_embeds.shape == (2, 256, T5_WIDTH)
    assert embeds.pooled_prompt_embeds.shape == (2, CLIP_WIDTH)
    ids = build_t5_tokenizer()(PROMPTS, padding="max_length", max_length=256, return_tensors="pt").input_ids
    # T5 runs unmasked over the padded prompt, as BFL's reference code does.
    torch.testing.assert_close(embeds.prompt_embeds, parts.t5(ids).last_hidden_state, rtol=0, atol=1e-6)


def test_wrong_or_incomplete_files_say_what_they_are(parts: TinyFluxParts, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    with pytest.raises(ModelFileError, match="not a T5 encoder"):
        load_t5_encoder(parts.clip_file)
    with pytest.raises(ModelFileError, match="not a CLIP text encoder"):
        load_clip_l(parts.t5_fp16_file)
    state = t5_state(parts.t5)
    del state["encoder.block.1.layer.1.DenseReluDense.wo.weight"]
    save_file(state, tmp_path / "t5_cut.safetensors")
    with pytest.raises(ModelFileError, match="lacks 1 T5 encoder tensors") as error:
        load_t5_encoder(tmp_path / "t5_cut.safetensors")
    assert error.value.kind == "incomplete"
