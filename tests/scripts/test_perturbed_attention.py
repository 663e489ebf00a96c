"""Perturbed-Attention Guidance through the studio, as the REST API selects it: it changes the
image on SD1.x and SDXL, with CFG and without, costs one extra UNet evaluation per step on the
positive prompt's rows only, leaves the shared model as it was, and pastes back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from modules.extensions.job_scripts import script_args_from_infotext
from modules.processing.output.infotext import parse_infotext
from modules.studio import Studio
from scripts.perturbed_attention import IdentitySelfAttention, PerturbSwitch
from tests.scripts.patch_fixtures import MODELS, data_dir, shared_unet, unet_state

__all__ = ["data_dir"]

PAG = "Perturbed-Attention Guidance"


@contextmanager
def unet_batches(unet: Any) -> Iterator[list[int]]:
    """The batch size of every UNet evaluation while the block runs (the job's clone copies
    this hook along with the module tree, and the hook is removed afterwards)."""
    sizes: list[int] = []
    handle = unet.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    try:
        yield sizes
    finally:
        handle.remove()


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sdxl"])
@pytest.mark.parametrize("cfg_scale", [7.0, 1.0])
def test_pag_changes_the_image_and_not_the_shared_model(generate: Callable, studio: Studio, model: str,
                                                        cfg_scale: float) -> None:
    plain = generate(**MODELS[model], cfg_scale=cfg_scale)
    before = unet_state(shared_unet(studio, model))
    on = generate(**MODELS[model], cfg_scale=cfg_scale, alwayson_scripts={PAG: {"args": {"enabled": True}}})
    assert on.hook_errors == []
    assert on.images[0].tobytes() != plain.images[0].tobytes()
    assert unet_state(shared_unet(studio, model)) == before
    assert generate(**MODELS[model], cfg_scale=cfg_scale).images[0].tobytes() == plain.images[0].tobytes()


@pytest.mark.parametrize(("cfg_scale", "plain_calls", "pag_calls"), [(7.0, [4, 4], [4, 2, 4, 2]),
                                                                     (1.0, [2, 2], [2, 2, 2, 2])])
def test_pag_costs_one_extra_evaluation_per_step_of_the_positive_rows_only(
        generate: Callable, studio: Studio, cfg_scale: float, plain_calls: list[int], pag_calls: list[int]) -> None:
    unet = shared_unet(studio, "tiny-sd15")
    with unet_batches(unet) as plain:
        generate(cfg_scale=cfg_scale, batch_size=2)
    with unet_batches(unet) as guided:
        generate(cfg_scale=cfg_scale, batch_size=2, alwayson_scripts={PAG: {"args": {"enabled": True}}})
    assert (plain, guided) == (plain_calls, pag_calls)


def test_scale_zero_or_off_makes_the_plain_image(generate: Callable) -> None:
    plain = generate().images[0].tobytes()
    assert generate(alwayson_scripts={PAG: {"args": {"enabled": True, "scale": 0.0}}}).images[0].tobytes() == plain
    assert generate(alwayson_scripts={PAG: {"args": [False, 5.0]}}).images[0].tobytes() == plain


def test_the_layer_choice_changes_which_layers_are_perturbed(generate: Callable) -> None:
    mid = generate(alwayson_scripts={PAG: {"args": {"enabled": True}}})
    up = generate(alwayson_scripts={PAG: {"args": {"enabled": True, "layers": "First up block"}}})
    assert up.hook_errors == [] and up.images[0].tobytes() != mid.images[0].tobytes()


def test_pag_infotext_uses_forges_keys_and_pastes_back(generate: Callable, studio: Studio) -> None:
    args = {"enabled": True, "scale": 4.5, "layers": "Middle and first up block"}
    on = generate(**MODELS["tiny-sdxl"], alwayson_scripts={PAG: {"args": args}})
    params = parse_infotext(on.infotexts[0])
    assert (params["PerturbedAttentionGuidance_enabled"], params["PerturbedAttentionGuidance_scale"]) == ("True",
                                                                                                        "4.5")
    pasted = script_args_from_infotext(studio.context.scripts, False, params)
    assert pasted[PAG] == args
    again = generate(**MODELS["tiny-sdxl"], alwayson_scripts={PAG: {"args": pasted[PAG]}})
    assert again.images[0].tobytes() == on.images[0].tobytes()
    incantations = script_args_from_infotext(studio.context.scripts, False, {"PAG Active": "True", "PAG Scale": "2"})
    assert incantations[PAG] == {"enabled": True, "scale": 2.0}


def test_the_perturbed_attention_is_the_value_projection_of_each_token() -> None:
    torch.manual_seed(0)
    attn = Attention(query_dim=8, heads=2, dim_head=4, processor=AttnProcessor2_0())
    tokens = torch.randn(1, 5, 8)
    switch = PerturbSwitch()
    processor = IdentitySelfAttention(attn.processor, switch)
    with torch.no_grad():
        assert torch.equal(processor(attn, tokens), attn.processor(attn, tokens))
        switch.on = True
        assert torch.allclose(processor(attn, tokens), attn.to_out[0](attn.to_v(tokens)))
