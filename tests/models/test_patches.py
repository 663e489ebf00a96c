"""Per-job model patches: they reach the job's UNet calls and never the shared model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from modules.models.hashing import HashCache
from modules.models.loader import LoadedModel
from modules.models.lora import LoraLibrary, LoraUse, loras_applied
from modules.models.patches import (
    ModelCall,
    ModelPatchError,
    ModelPatches,
    PatchedUNet,
    attention_modules,
    patched_unet,
    run_unet,
    weight_sharing_clone,
)
from tests.network_files import kohya_lora, write_lora

MID_SELF = "mid_block.attentions.0.transformer_blocks.0.attn1"


def _call(unet: Any, batch: int = 2, copies: int = 2, seed: int = 0) -> ModelCall:
    generator = torch.Generator().manual_seed(seed)
    width = unet.config.cross_attention_dim
    return ModelCall(torch.randn(batch * copies, 4, 8, 8, generator=generator), torch.tensor(500),
                     torch.randn(batch * copies, 77, width, generator=generator), None, copies, True, 7.0)


def _state(unet: Any) -> dict[str, Any]:
    """What a patch could leave behind on a module tree: processors, FreeU factors, hooks."""
    return {
        "processors": {name: (id(m.processor), type(m.processor)) for name, m in attention_modules(unet)},
        "freeu": [getattr(block, "b1", None) for block in unet.up_blocks],
        "hooks": sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in unet.modules()),
        "modules": [id(m) for m in unet.modules()],
    }


class Scale:
    """A processor that scales the original processor's output (a visible, harmless change)."""

    def __init__(self, original: Any, factor: float) -> None:
        self.original, self.factor = original, factor

    def __call__(self, attn: Any, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.original(attn, hidden_states, *args, **kwargs) * self.factor


def _every_kind_of_patch(unet: Any) -> ModelPatches:
    patches = ModelPatches("sd15", unet)
    patches.replace_attention(lambda name, module, original: Scale(original, 2.0), lambda name, m: name == MID_SELF)
    patches.add_forward_pre_hook("up_blocks.1", lambda module, args, kwargs: None)
    patches.add_forward_hook("mid_block", lambda module, args, kwargs, output: output * 1.5)
    patches.enable_freeu(s1=0.9, s2=0.2, b1=1.5, b2=1.6)
    patches.add_model_wrapper(lambda call, run: run(call) + 0.0)
    return patches


def test_the_clone_shares_every_weight_and_copies_only_the_module_tree(sd15_model: LoadedModel) -> None:
    unet = sd15_model.pipeline.unet
    clone = weight_sharing_clone(unet)
    assert all(a is b for a, b in zip(unet.parameters(), clone.parameters(), strict=True))
    assert all(a is b for a, b in zip(unet.buffers(), clone.buffers(), strict=True))
    assert clone is not unet and clone.mid_block is not unet.mid_block
    assert dict(clone.attn_processors).keys() == dict(unet.attn_processors).keys()
    assert all(clone.get_submodule(name).processor is not module.processor for name, module in attention_modules(unet))


def test_without_patches_the_job_uses_the_shared_unet_itself(sd15_model: LoadedModel) -> None:
    unet = sd15_model.pipeline.unet
    with patched_unet(unet, ModelPatches("sd15", unet)) as job_unet:
        assert job_unet is unet
    with patched_unet(unet, None) as job_unet:
        assert job_unet is unet


@torch.inference_mode()
def test_a_patched_job_changes_its_output_and_never_the_shared_model(sd15_model: LoadedModel) -> None:
    unet = sd15_model.pipeline.unet
    call = _call(unet)
    before_state, before = _state(unet), run_unet(unet, call)
    with patched_unet(unet, _every_kind_of_patch(unet)) as job_unet:
        assert isinstance(job_unet, PatchedUNet)
        patched = run_unet(job_unet, call)
        assert _state(unet) == before_state  # while the job runs
        assert torch.equal(run_unet(unet, call), before)
        assert [getattr(block, "b1", None) for block in job_unet.module.up_blocks] == [1.5, 1.5]
    assert not torch.allclose(patched, before)
    assert _state(unet) == before_state  # and after it
    assert torch.equal(run_unet(unet, call), before)


@torch.inference_mode()
def test_two_jobs_with_different_patches_do_not_see_each_other(sd15_model: LoadedModel) -> None:
    unet = sd15_model.pipeline.unet
    call = _call(unet)

    def scaled(factor: float) -> ModelPatches:
        patches = ModelPatches("sd15", unet)
        patches.replace_attention(lambda name, module, original: Scale(original, factor),
                                  lambda name, m: name == MID_SELF)
        return patches

    with patched_unet(unet, scaled(2.0)) as first, patched_unet(unet, scaled(3.0)) as second:
        assert first.module.get_submodule(MID_SELF).processor.factor == 2.0
        assert second.module.get_submodule(MID_SELF).processor.factor == 3.0
        out_first, out_second = run_unet(first, call), run_unet(second, call)
    with patched_unet(unet, scaled(2.0)) as again:
        assert torch.equal(run_unet(again, call), out_first)  # the second job left nothing on the first's path
    assert not torch.equal(out_first, out_second)


def test_wrappers_nest_in_registration_order_and_see_the_call(sd15_model: LoadedModel) -> None:
    unet = sd15_model.pipeline.unet
    seen: list[str] = []

    def wrapper(label: str) -> Any:
        def wrap(call: ModelCall, run: Any) -> torch.Tensor:
            seen.append(f"{label} in ({call.copies}, {call.uses_cfg}, {call.guidance_scale})")
            out = run(call)
            seen.append(f"{label} out")
            return out
        return wrap

    patches = ModelPatches("sd15", unet)
    patches.add_model_wrapper(wrapper("outer"))
    patches.add_model_wrapper(wrapper("inner"))
    with torch.inference_mode(), patched_unet(unet, patches) as job_unet:
        run_unet(job_unet, _call(unet))
    assert seen == ["outer in (2, True, 7.0)", "inner in (2, True, 7.0)", "inner out", "outer out"]


def test_a_patch_that_does_not_fit_the_model_is_refused_naming_what_it_lacks(sd15_model: LoadedModel) -> None:
    patches = ModelPatches("sd15", sd15_model.pipeline.unet)
    with pytest.raises(ModelPatchError, match="no block 'middle_block'.*mid_block"):
        patches.add_forward_hook("middle_block", lambda *args: None)
    with pytest.raises(ModelPatchError, match="selects no attention module.*attn1"):
        patches.replace_attention(lambda *args: None, lambda name, module: name.startswith("nowhere"))
    assert not patches


def test_copy_rows_slices_every_per_row_input() -> None:
    rows = torch.arange(6.0)
    call = ModelCall(rows.view(6, 1, 1, 1), torch.tensor(1), rows.view(6, 1, 1), {"time_ids": rows.view(6, 1)},
                     3, True, 5.0, {"down_block_additional_residuals": [rows.view(6, 1)],
                                    "mid_block_additional_residual": rows.view(6, 1)})
    first_positive = call.copy_rows(1)
    assert first_positive.sample.flatten().tolist() == [2.0, 3.0]
    assert first_positive.encoder_hidden_states.flatten().tolist() == [2.0, 3.0]
    assert first_positive.added_cond_kwargs["time_ids"].flatten().tolist() == [2.0, 3.0]
    assert first_positive.extra["down_block_additional_residuals"][0].flatten().tolist() == [2.0, 3.0]
    assert (first_positive.copies, first_positive.uses_cfg, first_positive.batch_size) == (1, False, 2)
    assert call.copy_rows(0).uses_cfg


def test_the_clone_of_a_unet_with_a_lora_applied_has_the_lora(sd15_model: LoadedModel, tmp_path: Path) -> None:
    """A job's LoRAs are injected before its clone is made, so the clone computes with them."""
    unet = sd15_model.pipeline.unet
    write_lora(tmp_path / "Lora" / "style.safetensors", kohya_lora(sd15_model.pipeline))
    library = LoraLibrary([tmp_path / "Lora"], HashCache(tmp_path / "hashes.json"))
    call = _call(unet, batch=1, copies=1)
    patches = ModelPatches("sd15", unet)
    patches.add_model_wrapper(lambda call, run: run(call))
    with torch.inference_mode():
        plain = run_unet(unet, call)
    with loras_applied(sd15_model.pipeline, library, [LoraUse(library.find("style"), 1.0, 1.0)]):
        with torch.inference_mode(), patched_unet(unet, patches) as job_unet:
            with_lora, cloned = run_unet(unet, call), run_unet(job_unet, call)
    assert torch.equal(cloned, with_lora) and not torch.allclose(cloned, plain)
