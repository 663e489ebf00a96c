"""FLUX.1 LoRA names -> diffusers' peft names (``modules.families.flux.lora_keys``), without a model.

At FLUX.1-dev's real widths the renaming must mean the same change of every layer as diffusers'
own kohya converter (which is written for exactly those widths); the low-rank tensors are small
even at full width, so this runs on CPU in a moment.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import FluxPipeline

from modules.families.flux.lora_keys import flux_lora_to_peft, is_flux_lora
from modules.families.flux.transformer_keys import FluxTransformerConfig

FLUX1_DEV = FluxTransformerConfig(num_layers=19, num_single_layers=38, attention_head_dim=128, num_attention_heads=24,
                                  in_channels=64, out_channels=64, joint_attention_dim=4096, pooled_projection_dim=768,
                                  guidance_embeds=True, axes_dims_rope=(16, 56, 56))
#: (kohya layer, inputs, outputs) at FLUX.1-dev's widths: fused and plain layers, first and last blocks.
FULL_WIDTH_LAYERS = (("lora_unet_double_blocks_0_img_attn_qkv", 3072, 9216),
                     ("lora_unet_double_blocks_18_txt_attn_qkv", 3072, 9216),
                     ("lora_unet_double_blocks_3_img_mod_lin", 3072, 18432),
                     ("lora_unet_double_blocks_3_txt_mlp_2", 12288, 3072),
                     ("lora_unet_single_blocks_0_linear1", 3072, 21504),
                     ("lora_unet_single_blocks_37_linear2", 15360, 3072),
                     ("lora_unet_single_blocks_5_modulation_lin", 3072, 9216))


def _kohya(layers: tuple[tuple[str, int, int], ...], rank: int = 4, alpha: float = 8.0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    state = {}
    for name, inputs, outputs in layers:
        state[f"{name}.lora_down.weight"] = torch.randn(rank, inputs, generator=generator)
        state[f"{name}.lora_up.weight"] = torch.randn(outputs, rank, generator=generator)
        state[f"{name}.alpha"] = torch.tensor(alpha)
    return state


def _deltas(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """peft layer name -> the change it makes to fixed probe inputs, ``up @ (down @ probe)`` (float64;
    the full (out, in) products would take half a GB at these widths)."""
    probes: dict[int, torch.Tensor] = {}
    deltas = {}
    for key, down in state.items():
        if key.endswith(".lora_A.weight"):
            width = down.shape[1]
            probe = probes.setdefault(width, torch.randn(width, 3, generator=torch.Generator().manual_seed(width),
                                                         dtype=torch.float64))
            deltas[key.removesuffix(".lora_A.weight")] = state[key.replace("lora_A", "lora_B")].double() @ (
                down.double() @ probe)
    return deltas


def test_kohya_at_full_width_means_what_diffusers_own_converter_makes() -> None:
    state = _kohya(FULL_WIDTH_LAYERS)
    ours = flux_lora_to_peft(dict(state), FLUX1_DEV)
    theirs = FluxPipeline.lora_state_dict(dict(state))

    assert ours.converted == len(FULL_WIDTH_LAYERS) and ours.unused == []
    ours_deltas, their_deltas = _deltas(ours.state), _deltas(theirs)
    assert ours_deltas.keys() == their_deltas.keys() and len(ours_deltas) == 14  # qkv -> 3 each, linear1 -> 4
    for name, delta in ours_deltas.items():
        torch.testing.assert_close(delta, their_deltas[name], msg=name)


def test_bfl_comfy_and_kohya_names_of_one_layer_give_the_same_tensors() -> None:
    down, up = torch.randn(4, 3072), torch.randn(9216, 4)
    layer = "double_blocks.2.img_attn.qkv"
    kohya = {f"lora_unet_{layer.replace('.', '_')}.lora_down.weight": down,
             f"lora_unet_{layer.replace('.', '_')}.lora_up.weight": up,
             f"lora_unet_{layer.replace('.', '_')}.alpha": torch.tensor(2.0)}
    comfy = {f"diffusion_model.{layer}.lora_down.weight": down, f"diffusion_model.{layer}.lora_up.weight": up,
             f"diffusion_model.{layer}.alpha": torch.tensor(2.0)}
    bfl = {f"model.diffusion_model.{layer}.lora_A.weight": down * 0.5,
           f"model.diffusion_model.{layer}.lora_B.weight": up}
    results = [flux_lora_to_peft(s, FLUX1_DEV).state for s in (kohya, comfy, bfl)]
    assert sorted(results[0]) == sorted(f"transformer.transformer_blocks.2.attn.to_{c}.lora_{p}.weight"
                                        for c in "qkv" for p in "AB")
    for other in results[1:]:
        assert other.keys() == results[0].keys()
        assert all(torch.equal(other[k], v) for k, v in results[0].items())
    torch.testing.assert_close(results[0]["transformer.transformer_blocks.2.attn.to_k.lora_B.weight"], up[3072:6144])


def test_clip_names_go_to_the_text_encoder_and_t5_and_dora_are_left_out() -> None:
    clip_modules = ["encoder.layers.0.self_attn.q_proj", "encoder.layers.0.mlp.fc1"]
    state = {"lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": torch.ones(2, 8),
             "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": torch.ones(8, 2),
             "text_encoders.clip_l.transformer.text_model.encoder.layers.0.mlp.fc1.lora_A.weight": torch.ones(2, 8),
             "text_encoders.clip_l.transformer.text_model.encoder.layers.0.mlp.fc1.lora_B.weight": torch.ones(16, 2),
             "lora_te3_encoder_block_0_layer_0_SelfAttention_q.lora_down.weight": torch.ones(2, 8),
             "lora_unet_double_blocks_0_img_attn_proj.dora_scale": torch.ones(1, 3072),
             "transformer.transformer_blocks.0.attn.to_out.0.lora_A.weight": torch.ones(2, 3072)}
    conversion = flux_lora_to_peft(state, FLUX1_DEV, clip_modules)
    assert sorted(conversion.state) == [
        "text_encoder.encoder.layers.0.mlp.fc1.lora_A.weight", "text_encoder.encoder.layers.0.mlp.fc1.lora_B.weight",
        "text_encoder.encoder.layers.0.self_attn.q_proj.lora_A.weight",
        "text_encoder.encoder.layers.0.self_attn.q_proj.lora_B.weight",
        "transformer.transformer_blocks.0.attn.to_out.0.lora_A.weight"]  # diffusers' names pass through
    assert conversion.converted == 2 and len(conversion.unused) == 2


def test_half_a_pair_or_another_width_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="only part of a LoRA pair"):
        flux_lora_to_peft({"lora_unet_txt_in.lora_down.weight": torch.ones(2, 4096)}, FLUX1_DEV)
    wrong = {"diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight": torch.ones(2, 64),
             "diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight": torch.ones(192, 2)}
    with pytest.raises(ValueError, match="192 outputs in the LoRA and 9216 in this FLUX model"):
        flux_lora_to_peft(wrong, FLUX1_DEV)


@pytest.mark.parametrize(("name", "is_flux"), [
    ("lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight", True),
    ("lora_unet_single_blocks_7_linear1.alpha", True),
    ("diffusion_model.single_blocks.0.linear2.lora_A.weight", True),
    ("transformer.single_transformer_blocks.3.attn.to_q.lora_B.weight", True),
    ("double_blocks.0.processor.proj_lora1.down.weight", True),  # XLabs
    ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight", False),
    ("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight", False),
    ("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_up.weight", False),
    ("lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", False),
])
def test_flux_loras_are_told_from_sd_loras_by_their_names(name: str, is_flux: bool) -> None:
    assert is_flux_lora([name]) is is_flux
