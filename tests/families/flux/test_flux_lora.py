"""FLUX.1 LoRAs through the studio's LoRA path (``loras_applied``) on diffusers' FluxPipeline.

The same tiny random LoRA is written in kohya, BFL, ComfyUI and diffusers key layouts
(``tiny_flux_lora``). Each must change the transformer and CLIP-L. Every layer's effective weight
must be W + weight * alpha / rank * up @ down, with BFL's fused q/k/v (and single blocks' q/k/v/MLP)
split by rows. After the block the model must be bit-identical. LoRAs of the other family must be
reported, not crash.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import FluxPipeline

from modules.families.flux.transformer import load_flux_transformer
from modules.models.hashing import HashCache
from modules.models.loader import LoadedModel
from modules.models.lora import LoraLibrary, LoraUse, loras_applied
from tests.families.flux.tiny_flux import run_tiny_flux, tiny_flux_inputs, write_flux_bfl_file
from tests.families.flux.tiny_flux_lora import (
    FLUX_LORA_LAYOUTS,
    PIPELINE_SPEC,
    TinyFluxLora,
    random_flux_lora,
    tiny_flux_pipeline,
    write_flux_lora,
)
from tests.network_files import kohya_lora, write_lora

HIDDEN = PIPELINE_SPEC.hidden


@pytest.fixture(scope="module")
def pipeline() -> FluxPipeline:
    return tiny_flux_pipeline()


@pytest.fixture(scope="module")
def lora(pipeline: FluxPipeline) -> TinyFluxLora:
    return random_flux_lora(pipeline)


@pytest.fixture(scope="module")
def library(pipeline: FluxPipeline, lora: TinyFluxLora, tmp_path_factory: pytest.TempPathFactory) -> LoraLibrary:
    root = tmp_path_factory.mktemp("flux_lora") / "Lora"
    for layout in FLUX_LORA_LAYOUTS:
        write_flux_lora(root / f"{layout}.safetensors", lora, layout, pipeline)
    return LoraLibrary([root], HashCache(root.parent / "hashes.json"))


def _transformer_output(pipeline: FluxPipeline) -> torch.Tensor:
    return run_tiny_flux(pipeline.transformer, tiny_flux_inputs(PIPELINE_SPEC))


def _clip_output(pipeline: FluxPipeline) -> torch.Tensor:
    ids = torch.tensor([[49406, 320, 1929, 49407] + [49407] * 73])
    with torch.no_grad():
        return pipeline.text_encoder(ids)[0]


def _effective_weight(model: torch.nn.Module, name: str) -> torch.Tensor:
    """The (out, in) weight a linear layer computes with, LoRA wrapper or not: its answer to the
    identity matrix less its bias."""
    layer = model.get_submodule(name)
    width = getattr(layer, "base_layer", layer).in_features
    with torch.no_grad():
        return (layer(torch.eye(width)) - layer(torch.zeros(1, width))).T


def _linear_layer_names(model: torch.nn.Module) -> list[str]:
    """The model's own linear layers, with or without peft's wrappers around them."""
    return sorted({name.removesuffix(".base_layer") for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and ".lora_" not in name})


def _effective_weights(pipeline: FluxPipeline) -> dict[str, torch.Tensor]:
    """Every linear layer's effective weight, transformer's and CLIP-L's."""
    return {prefix + name: _effective_weight(model, name)
            for prefix, model in (("transformer.", pipeline.transformer), ("text_encoder.", pipeline.text_encoder))
            for name in _linear_layer_names(model)}


@pytest.mark.parametrize("layout", FLUX_LORA_LAYOUTS)
def test_a_lora_in_each_layout_changes_transformer_and_clip(pipeline: FluxPipeline, library: LoraLibrary,
                                                            layout: str) -> None:
    transformer_before, clip_before = _transformer_output(pipeline), _clip_output(pipeline)
    with loras_applied(pipeline, library, [LoraUse(library.find(layout))]) as outcome:
        assert outcome.failures == [] and len(outcome.applied) == 1
        assert pipeline.get_list_adapters() == {"transformer": ["job_lora_0"], "text_encoder": ["job_lora_0"]}
        assert (_transformer_output(pipeline) - transformer_before).abs().max() > 0.1
        assert (_clip_output(pipeline) - clip_before).abs().max() > 0.01


def test_fused_qkv_and_linear1_are_split_by_rows_with_weight_alpha_over_rank(
        pipeline: FluxPipeline, library: LoraLibrary, lora: TinyFluxLora) -> None:
    """kohya's ``img_attn.qkv`` / ``linear1`` pairs land on q, k, v (and the single block's MLP
    input) as W + weight * alpha/rank * up[rows] @ down, hand-computed here."""
    unet_weight = 0.8
    base = {name: pipeline.transformer.get_submodule(name).weight.detach().clone()
            for name in ("transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k",
                         "transformer_blocks.0.attn.to_v", "single_transformer_blocks.1.attn.to_q",
                         "single_transformer_blocks.1.attn.to_k", "single_transformer_blocks.1.attn.to_v",
                         "single_transformer_blocks.1.proj_mlp")}
    with loras_applied(pipeline, library, [LoraUse(library.find("kohya"), 1.0, unet_weight)]):
        for bfl, block in (("double_blocks.0.img_attn.qkv", "transformer_blocks.0."),
                           ("single_blocks.1.linear1", "single_transformer_blocks.1.")):
            down, up = lora.transformer[bfl]
            delta = unet_weight * lora.scale * (up @ down)
            rows = {"attn.to_q": (0, HIDDEN), "attn.to_k": (HIDDEN, 2 * HIDDEN), "attn.to_v": (2 * HIDDEN, 3 * HIDDEN)}
            if block.startswith("single"):
                rows["proj_mlp"] = (3 * HIDDEN, 7 * HIDDEN)
            for layer, (start, stop) in rows.items():
                expected = base[block + layer] + delta[start:stop]
                torch.testing.assert_close(_effective_weight(pipeline.transformer, block + layer), expected,
                                           atol=1e-5, rtol=1e-5)


def test_the_four_layouts_of_one_lora_give_equal_weights(pipeline: FluxPipeline, library: LoraLibrary) -> None:
    weights = {}
    for layout in FLUX_LORA_LAYOUTS:
        with loras_applied(pipeline, library, [LoraUse(library.find(layout))]):
            weights[layout] = _effective_weights(pipeline)
    base = _effective_weights(pipeline)
    reference = weights["kohya"]
    assert reference.keys() == base.keys() and len(reference) > 60
    changed = [name for name in reference if not torch.allclose(reference[name], base[name])]
    assert len(changed) == len(reference)  # every linear layer, fused ones split, final norm swapped
    for layout in FLUX_LORA_LAYOUTS[1:]:
        for name, weight in reference.items():
            torch.testing.assert_close(weights[layout][name], weight, atol=1e-5, rtol=1e-5, msg=f"{layout} {name}")


def test_leaving_the_block_restores_every_weight_bit_for_bit(pipeline: FluxPipeline, library: LoraLibrary) -> None:
    state_before = {k: v.clone() for k, v in pipeline.transformer.state_dict().items()}
    clip_before = {k: v.clone() for k, v in pipeline.text_encoder.state_dict().items()}
    modules_before = {name: type(m) for name, m in pipeline.transformer.named_modules()}
    output_before = _transformer_output(pipeline)

    uses = [LoraUse(library.find("kohya")), LoraUse(library.find("bfl"), 0.5, 0.5)]
    with loras_applied(pipeline, library, uses) as outcome:
        assert len(outcome.applied) == 2

    state = pipeline.transformer.state_dict()
    assert state.keys() == state_before.keys() and all(torch.equal(state[k], v) for k, v in state_before.items())
    assert all(torch.equal(pipeline.text_encoder.state_dict()[k], v) for k, v in clip_before.items())
    assert {name: type(m) for name, m in pipeline.transformer.named_modules()} == modules_before
    assert torch.equal(_transformer_output(pipeline), output_before)
    assert pipeline.get_list_adapters() == {}


def test_weight_one_half_lies_halfway(pipeline: FluxPipeline, library: LoraLibrary) -> None:
    name = "transformer_blocks.1.attn.to_k"
    base, output_base = _effective_weight(pipeline.transformer, name), _transformer_output(pipeline)
    results = {}
    for weight in (0.5, 1.0):
        with loras_applied(pipeline, library, [LoraUse(library.find("comfy"), weight, weight)]):
            results[weight] = (_effective_weight(pipeline.transformer, name), _transformer_output(pipeline))
    torch.testing.assert_close(results[0.5][0] - base, (results[1.0][0] - base) / 2, atol=1e-6, rtol=1e-5)
    half, full = (results[w][1] - output_base for w in (0.5, 1.0))
    assert 0 < half.norm() < full.norm()


def test_an_sd_lora_on_flux_is_reported_and_changes_nothing(pipeline: FluxPipeline, tmp_path: Path) -> None:
    root = tmp_path / "Lora"
    module = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    write_lora(root / "sd15_style.safetensors", {f"{module}.lora_down.weight": torch.ones(2, 768),
                                                  f"{module}.lora_up.weight": torch.ones(320, 2)})
    write_lora(root / "sd_diffusers.safetensors", {
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": torch.ones(2, 768),
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight": torch.ones(320, 2)})
    library = LoraLibrary([root], HashCache(tmp_path / "hashes.json"))
    before = _transformer_output(pipeline)

    uses = [LoraUse(library.find("sd15_style")), LoraUse(library.find("sd_diffusers"))]
    with loras_applied(pipeline, library, uses) as outcome:
        assert outcome.applied == [] and len(outcome.failures) == 2
        assert outcome.failures[0].startswith("sd15_style: ") and "FLUX.1" in outcome.failures[0]
        assert outcome.failures[1].startswith("sd_diffusers: ")
        assert torch.equal(_transformer_output(pipeline), before)
    assert pipeline.get_list_adapters() == {}


def test_a_flux_lora_on_sd_is_reported_and_the_sd_lora_beside_it_applies(
        sd15_model: LoadedModel, pipeline: FluxPipeline, lora: TinyFluxLora, tmp_path: Path) -> None:
    root = tmp_path / "Lora"
    write_flux_lora(root / "flux_style.safetensors", lora, "kohya", pipeline)
    write_lora(root / "sd_style.safetensors", kohya_lora(sd15_model.pipeline))
    library = LoraLibrary([root], HashCache(tmp_path / "hashes.json"))

    uses = [LoraUse(library.find("flux_style")), LoraUse(library.find("sd_style"))]
    with loras_applied(sd15_model.pipeline, library, uses) as outcome:
        assert [use.file.name for use in outcome.applied] == ["sd_style"]
        assert outcome.failures == ["flux_style: a LoRA for FLUX.1; the loaded model is not FLUX.1"]
    assert sd15_model.pipeline.get_list_adapters() == {}


def test_a_flux_lora_for_another_width_is_reported(pipeline: FluxPipeline, tmp_path: Path) -> None:
    """A FLUX.1-dev LoRA (3072 wide) on a smaller FLUX model: a notice, no crash, no change."""
    name = "lora_unet_single_blocks_0_linear1"
    write_lora(tmp_path / "Lora" / "dev.safetensors", {f"{name}.lora_down.weight": torch.ones(2, 3072),
                                                       f"{name}.lora_up.weight": torch.ones(21504, 2)})
    library = LoraLibrary([tmp_path / "Lora"], HashCache(tmp_path / "hashes.json"))
    before = _transformer_output(pipeline)
    with loras_applied(pipeline, library, [LoraUse(library.find("dev"))]) as outcome:
        assert outcome.applied == [] and "21504 outputs in the LoRA" in outcome.failures[0]
    assert torch.equal(_transformer_output(pipeline), before)


@pytest.mark.parametrize("storage", ["fp8", "gguf"])
def test_fp8_and_gguf_transformers_take_the_lora_and_come_back_unchanged(
        storage: str, pipeline: FluxPipeline, library: LoraLibrary, lora: TinyFluxLora, tmp_path: Path) -> None:
    """fp8 layers compute upcast, so a LoRA's own layers must not be made in fp8 (torch cannot
    multiply fp8): the change must be the float32 model's, to fp8/Q8_0 rounding."""
    if storage == "fp8":
        path = write_flux_bfl_file(tmp_path / "flux1-dev-fp8.safetensors", PIPELINE_SPEC, fp8=torch.float8_e4m3fn)
    else:
        from gguf import GGMLQuantizationType

        from tests.families.flux.tiny_flux_gguf import write_flux_gguf_file
        path = write_flux_gguf_file(tmp_path / "flux1-dev-Q8_0.gguf", GGMLQuantizationType.Q8_0, PIPELINE_SPEC, 0)
    stored = FluxPipeline(**{**pipeline.components, "transformer": load_flux_transformer(path, dtype=torch.float32)})
    before = _transformer_output(stored)
    with loras_applied(pipeline, library, [LoraUse(library.find("kohya"))]):
        with_lora = _transformer_output(pipeline)
    full_change = with_lora - _transformer_output(pipeline)
    with loras_applied(stored, library, [LoraUse(library.find("kohya"))]) as outcome:
        assert outcome.failures == []
        change = _transformer_output(stored) - before
        assert change.abs().max() > 0.1 and (change - full_change).abs().max() < 0.1 * full_change.abs().max()
    assert torch.equal(_transformer_output(stored), before) and stored.get_list_adapters() == {}
