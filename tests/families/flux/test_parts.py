"""FLUX.1's text encoders and VAE are chosen as in Forge: embedded parts, else the user's
choice, else the one file that fits; otherwise a message that says what to put where."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modules.families.flux.part_files import CLIP_L, T5XXL, VAE, FluxWidths, scan_part_files
from modules.families.flux.parts import (
    TEXT_ENCODER_FOLDER,
    AmbiguousPartError,
    MissingPartError,
    UnusablePartError,
    choose_flux_parts,
    load_part,
    load_text_encoders,
)
from modules.families.flux.text_encoders import FluxTextEncoders
from tests.families.flux.tiny_flux_parts import (
    CLIP_PREFIX,
    CLIP_WIDTH,
    T5_PREFIX,
    T5_WIDTH,
    VAE_PREFIX,
    TinyFluxParts,
    write_tiny_flux_parts,
)

TINY = FluxWidths(clip=CLIP_WIDTH, t5=T5_WIDTH)


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> TinyFluxParts:
    return write_tiny_flux_parts(tmp_path_factory.mktemp("flux_models"))


def _folders(root: Path, parts: TinyFluxParts, text: list[Path], vae: list[Path]) -> tuple[Path, Path]:
    text_dir, vae_dir = root / "text_encoder", root / "VAE"
    for folder, files in ((text_dir, text), (vae_dir, vae)):
        folder.mkdir(parents=True, exist_ok=True)
        for file in files:
            shutil.copy(file, folder / file.name)
    return text_dir, vae_dir


def test_all_in_one_parts_win_and_need_no_folders(parts: TinyFluxParts, tmp_path: Path) -> None:
    text_dir, vae_dir = _folders(tmp_path, parts, [parts.clip_file, parts.t5_fp16_file], [parts.ae_file])
    chosen = choose_flux_parts(parts.all_in_one, text_dir, vae_dir, chosen=["ae.safetensors"])
    assert [(p.kind, p.prefix, p.embedded) for p in (chosen.clip_l, chosen.t5xxl, chosen.vae)] == [
        (CLIP_L, CLIP_PREFIX, True), (T5XXL, T5_PREFIX, True), (VAE, VAE_PREFIX, True)]
    assert {p.path for p in (chosen.clip_l, chosen.t5xxl, chosen.vae)} == {parts.all_in_one}
    assert choose_flux_parts(parts.all_in_one, tmp_path / "none", tmp_path / "none").vae.layout == "single_file"


def test_one_file_of_each_kind_is_used_automatically(parts: TinyFluxParts, tmp_path: Path) -> None:
    text_dir, vae_dir = _folders(tmp_path, parts, [parts.clip_file, parts.t5_fp8_file], [parts.ae_file])
    chosen = choose_flux_parts(parts.transformer_only, text_dir, vae_dir)
    assert (chosen.clip_l.name, chosen.t5xxl.name, chosen.vae.name) == (
        "clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors", "ae.safetensors")
    assert chosen.t5xxl.path == text_dir / "t5xxl_fp8_e4m3fn.safetensors" and not chosen.t5xxl.embedded
    assert chosen.clip_l.prefix == "" and chosen.vae.prefix == ""


def test_two_t5_files_ask_for_a_choice_that_then_decides(parts: TinyFluxParts, tmp_path: Path) -> None:
    text_dir, vae_dir = _folders(tmp_path, parts, [parts.clip_file, parts.t5_fp16_file, parts.t5_fp8_file],
                                 [parts.ae_file])
    with pytest.raises(AmbiguousPartError) as error:
        choose_flux_parts(parts.transformer_only, text_dir, vae_dir)
    assert error.value.part == T5XXL
    assert error.value.candidates == ("t5xxl_fp16.safetensors", "t5xxl_fp8_e4m3fn.safetensors")
    message = str(error.value)
    assert "models/text_encoder/ has 2" in message and "forge_additional_modules" in message
    assert "--text-encoder" in message and str(tmp_path) not in message
    for name in ("t5xxl_fp16.safetensors", "t5xxl_fp16"):  # by file name, or without the extension
        picked = choose_flux_parts(parts.transformer_only, text_dir, vae_dir, chosen=[name])
        assert picked.t5xxl.name == "t5xxl_fp16.safetensors" and picked.clip_l.name == "clip_l.safetensors"


def test_missing_parts_say_what_to_put_where(parts: TinyFluxParts, tmp_path: Path) -> None:
    text_dir, vae_dir = _folders(tmp_path, parts, [parts.clip_file], [parts.ae_file])
    with pytest.raises(MissingPartError) as error:
        choose_flux_parts(parts.transformer_only, text_dir, vae_dir)
    assert error.value.part == T5XXL
    assert str(error.value) == ("FLUX.1 needs a T5-XXL text encoder: put t5xxl_fp16.safetensors "
                                "(or t5xxl_fp8_e4m3fn.safetensors) in models/text_encoder/")
    text_dir, vae_dir = _folders(tmp_path / "b", parts, [parts.clip_file, parts.t5_fp16_file], [])
    with pytest.raises(MissingPartError, match=r"^FLUX.1 needs its VAE: put ae.safetensors in models/VAE/$"):
        choose_flux_parts(parts.transformer_only, text_dir, vae_dir)


def test_an_sd_vae_does_not_count_and_cannot_be_chosen(parts: TinyFluxParts, tmp_path: Path) -> None:
    text_dir, vae_dir = _folders(tmp_path, parts, [parts.clip_file, parts.t5_fp16_file], [])
    save_file({"decoder.conv_in.weight": torch.zeros(8, 4, 3, 3)}, vae_dir / "sd_vae.safetensors")
    with pytest.raises(MissingPartError):
        choose_flux_parts(parts.transformer_only, text_dir, vae_dir)
    with pytest.raises(UnusablePartError, match="sd_vae.safetensors is an SD1.x/SDXL VAE"):
        choose_flux_parts(parts.transformer_only, text_dir, vae_dir, chosen=["sd_vae.safetensors"])


def test_bad_choices_are_named(parts: TinyFluxParts, tmp_path: Path) -> None:
    text_dir, vae_dir = _folders(tmp_path, parts, [parts.clip_file, parts.t5_fp16_file, parts.t5_fp8_file],
                                 [parts.ae_file])
    with pytest.raises(UnusablePartError, match="no file named 'nope.safetensors' in models/text_encoder/"):
        choose_flux_parts(parts.transformer_only, text_dir, vae_dir, chosen=["nope.safetensors"])
    with pytest.raises(UnusablePartError, match="both chosen as a T5-XXL text encoder"):
        choose_flux_parts(parts.transformer_only, text_dir, vae_dir,
                          chosen=["t5xxl_fp16.safetensors", "t5xxl_fp8_e4m3fn.safetensors"])


def test_files_are_classified_by_keys_not_names(parts: TinyFluxParts, tmp_path: Path) -> None:
    folder = tmp_path / "text_encoder"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(parts.clip_file, folder / "sub" / "renamed.safetensors")
    shutil.copy(parts.t5_fp16_file, folder / "clip_l.safetensors")  # a T5 under CLIP's name
    save_file({"text_model.embeddings.token_embedding.weight": torch.zeros(49408, 1280)}, folder / "g.safetensors")
    (folder / "broken.safetensors").write_bytes(b"not a model")
    found = {file.name: (file.kind, file.what) for file in scan_part_files([folder], TINY)}
    assert found["sub/renamed.safetensors"] == (CLIP_L, "a CLIP-L text encoder")
    assert found["clip_l.safetensors"] == (T5XXL, "a T5-XXL text encoder")
    assert found["g.safetensors"] == (None, "a CLIP-G text encoder")
    assert found["broken.safetensors"][0] is None and found["broken.safetensors"][1].startswith("unreadable")


def test_widths_come_from_the_transformer(parts: TinyFluxParts, tmp_path: Path) -> None:
    # The tiny encoders fit the tiny transformer, not a real FLUX.1 (CLIP 768, T5 4096).
    real = [file.kind for file in scan_part_files([parts.clip_file.parent])]
    assert real == [None, None, None]
    transformer = {"model.diffusion_model.txt_in.weight": torch.zeros(16, 4096),
                   "model.diffusion_model.vector_in.in_layer.weight": torch.zeros(16, 768)}
    save_file(transformer, tmp_path / "flux1-real.safetensors")
    text_dir, vae_dir = _folders(tmp_path, parts, [parts.clip_file, parts.t5_fp16_file], [parts.ae_file])
    with pytest.raises(MissingPartError, match="CLIP-L"):
        choose_flux_parts(tmp_path / "flux1-real.safetensors", text_dir, vae_dir)


def test_a_diffusers_folder_brings_its_parts(tmp_path: Path) -> None:
    folder = tmp_path / "FLUX.1-dev"
    for sub, config in (("transformer", {"joint_attention_dim": 4096, "pooled_projection_dim": 768}),
                        ("text_encoder", {}), ("text_encoder_2", {}), ("vae", {})):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "model_index.json").write_text("{}", encoding="utf-8")
    chosen = choose_flux_parts(folder, tmp_path / "none", tmp_path / "none")
    assert (chosen.clip_l.path, chosen.t5xxl.path, chosen.vae.path) == (
        folder / "text_encoder", folder / "text_encoder_2", folder / "vae")
    assert {p.layout for p in (chosen.clip_l, chosen.t5xxl, chosen.vae)} == {"diffusers"}


def test_the_text_encoder_folder_is_forges_and_ships_like_the_other_model_folders(tmp_path: Path) -> None:
    from modules.paths import REPO_ROOT, DataPaths

    assert DataPaths(tmp_path).text_encoder == tmp_path / "models" / "text_encoder"
    assert DataPaths(tmp_path).text_encoder.relative_to(tmp_path).as_posix() == TEXT_ENCODER_FOLDER
    assert (DataPaths().text_encoder / ".gitkeep").is_file() and (REPO_ROOT / "models" / "VAE" / ".gitkeep").is_file()


def test_chosen_parts_load_and_encode_as_the_saved_models(parts: TinyFluxParts, tmp_path: Path) -> None:
    text_dir, vae_dir = _folders(tmp_path, parts, [parts.clip_file, parts.t5_fp16_file], [parts.ae_file])
    for checkpoint in (parts.transformer_only, parts.all_in_one):
        chosen = choose_flux_parts(checkpoint, text_dir, vae_dir)
        encoders = load_text_encoders(chosen, torch.float32)
        embeds = encoders.encode(["a photo of a cat"], max_length=16)
        ids = encoders.t5_tokenizer(["a photo of a cat"], padding="max_length", max_length=16,
                                    return_tensors="pt").input_ids
        torch.testing.assert_close(embeds.prompt_embeds, parts.t5(ids).last_hidden_state, rtol=0, atol=1e-6)
        vae = load_part(chosen.vae, torch.float32)
        assert vae.config.latent_channels == 16


def test_a_diffusers_folders_parts_load(parts: TinyFluxParts, tmp_path: Path) -> None:
    folder = tmp_path / "FLUX.1-tiny"
    parts.clip_l.save_pretrained(folder / "text_encoder")
    parts.t5.save_pretrained(folder / "text_encoder_2")
    parts.vae.save_pretrained(folder / "vae")
    chosen = choose_flux_parts(folder, tmp_path / "none", tmp_path / "none")
    encoders = load_text_encoders(chosen, torch.float32)
    reference = FluxTextEncoders(parts.clip_l, encoders.clip_tokenizer, parts.t5, encoders.t5_tokenizer)
    got, want = encoders.encode(["a cat"], 16), reference.encode(["a cat"], 16)
    torch.testing.assert_close(got.pooled_prompt_embeds, want.pooled_prompt_embeds, rtol=0, atol=1e-6)
    torch.testing.assert_close(got.prompt_embeds, want.prompt_embeds, rtol=0, atol=1e-6)
    assert load_part(chosen.vae, torch.float32).config.shift_factor == 0.1159


def test_a_path_is_not_a_name_and_gguf_transformers_carry_no_parts(parts: TinyFluxParts, tmp_path: Path) -> None:
    text_dir, vae_dir = _folders(tmp_path, parts, [parts.clip_file, parts.t5_fp16_file, parts.t5_fp8_file],
                                 [parts.ae_file])
    with pytest.raises(UnusablePartError, match="is a file path; name a file"):
        choose_flux_parts(parts.transformer_only, text_dir, vae_dir, chosen=[str(text_dir / "t5xxl_fp16.safetensors")])
    gguf = tmp_path / "flux1-dev-Q4_K_S.gguf"
    gguf.write_bytes(b"GGUF")
    picked = choose_flux_parts(gguf, text_dir, vae_dir, chosen=["t5xxl_fp16"], widths=TINY)
    assert (picked.clip_l.name, picked.t5xxl.name, picked.vae.name) == (
        "clip_l.safetensors", "t5xxl_fp16.safetensors", "ae.safetensors")
    with pytest.raises(UnusablePartError, match=r"width 32\), not T5-XXL"):  # a real FLUX.1 takes width 4096
        choose_flux_parts(gguf, text_dir, vae_dir, chosen=["t5xxl_fp16"])
