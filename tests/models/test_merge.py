"""Checkpoint Merger: A1111's formulas per key, streamed output, metadata, and a merged model that generates."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from modules.models.files import ModelFileError
from modules.models.hashing import HashCache, sha256_of_file
from modules.models.merge import MergeError, MergeRequest, default_output_name, merge_checkpoints
from modules.models.merge_writer import TensorSpec, dtype_name, write_safetensors

UNET = "model.diffusion_model."
VAE_KEY = "first_stage_model.decoder.conv_in.weight"
POSITION_IDS = "cond_stage_model.transformer.text_model.embeddings.position_ids"
MERGED = (UNET + "w32", UNET + "w16", UNET + "wbf16", VAE_KEY)  # float keys of equal shape in A, B, C
COPIED = (UNET + "mismatch", UNET + "only_in_a", POSITION_IDS, "alphas_cumprod")


def _state(seed: int, mismatch: int = 3, with_only_a: bool = True) -> dict[str, torch.Tensor]:
    """A tiny "checkpoint": float32/16/bf16 weights, int64 position ids, a schedule buffer."""
    gen = torch.Generator().manual_seed(seed)
    state = {
        UNET + "w32": torch.randn(4, 3, generator=gen),
        UNET + "w16": torch.randn(5, generator=gen).half(),  # odd length: later tensors misalign unless ordered
        UNET + "wbf16": torch.randn(2, 2, generator=gen).bfloat16(),
        UNET + "mismatch": torch.randn(mismatch, generator=gen),
        VAE_KEY: torch.randn(4, 4, 3, 3, generator=gen),
        POSITION_IDS: torch.arange(77, dtype=torch.int64).unsqueeze(0),
        "alphas_cumprod": torch.rand(10, generator=gen),
    }
    if with_only_a:
        state[UNET + "only_in_a"] = torch.randn(2, generator=gen)
    return state


def _save(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    save_file(state, str(path), metadata=metadata)
    return path


@pytest.fixture
def abc(tmp_path: Path) -> dict[str, tuple[Path, dict[str, torch.Tensor]]]:
    """Models A, B (mismatched shape, lacks a key) and C on disk, with their tensors."""
    states = {"a": _state(1), "b": _state(2, mismatch=5, with_only_a=False), "c": _state(3, with_only_a=False)}
    return {name: (_save(tmp_path / f"{name}.safetensors", s), s) for name, s in states.items()}


def _merge(abc: dict, out: Path, **fields: object) -> dict[str, torch.Tensor]:
    request = MergeRequest(primary=abc["a"][0], secondary=abc["b"][0], tertiary=abc["c"][0], output=out, **fields)
    return load_file(str(merge_checkpoints(request)))


def _expect(merged: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``merged`` (float32 arithmetic) rounded to ``like``'s dtype, as the merge stores it."""
    return merged.to(like.dtype)


def test_weighted_sum_is_a1111_formula_and_copies_the_rest(abc, tmp_path) -> None:
    out = _merge(abc, tmp_path / "ws.safetensors", method="Weighted sum", multiplier=0.3)
    a, b = abc["a"][1], abc["b"][1]
    assert set(out) == set(a)
    for key in MERGED:
        assert out[key].dtype == a[key].dtype
        assert torch.equal(out[key], _expect(0.7 * a[key].float() + 0.3 * b[key].float(), a[key]))
    for key in COPIED:  # missing in B, other shape, int position ids, schedule buffer
        assert torch.equal(out[key], a[key]) and out[key].dtype == a[key].dtype


def test_add_difference_is_a_plus_m_times_b_minus_c(abc, tmp_path) -> None:
    out = _merge(abc, tmp_path / "ad.safetensors", method="Add difference", multiplier=0.6)
    a, b, c = abc["a"][1], abc["b"][1], abc["c"][1]
    for key in MERGED:
        expected = _expect(a[key].float() + 0.6 * (b[key].float() - c[key].float()), a[key])
        assert torch.allclose(out[key].float(), expected.float(), atol=1e-6)
    assert all(torch.equal(out[key], a[key]) for key in COPIED)


def test_no_interpolation_copies_a_and_never_opens_b(abc, tmp_path) -> None:
    request = MergeRequest(primary=abc["a"][0], secondary=tmp_path / "absent.safetensors",
                           output=tmp_path / "a2.safetensors", method="No interpolation")
    out = load_file(str(merge_checkpoints(request)))
    assert set(out) == set(abc["a"][1])
    assert all(torch.equal(out[k], v) and out[k].dtype == v.dtype for k, v in abc["a"][1].items())


def test_fp16_output_casts_floats_only(abc, tmp_path) -> None:
    out = _merge(abc, tmp_path / "h.safetensors", multiplier=0.5, save_as_fp16=True)
    a, b = abc["a"][1], abc["b"][1]
    assert {k for k, v in out.items() if v.dtype == torch.float16} == set(a) - {POSITION_IDS}
    assert out[POSITION_IDS].dtype == torch.int64 and torch.equal(out[POSITION_IDS], a[POSITION_IDS])
    expected = (0.5 * a[UNET + "w32"] + 0.5 * b[UNET + "w32"]).half()
    assert torch.equal(out[UNET + "w32"], expected)


def test_discard_weights_drops_matching_keys(abc, tmp_path) -> None:
    out = _merge(abc, tmp_path / "d.safetensors", discard_weights=r"^first_stage_model\.|only_in")
    assert set(out) == set(abc["a"][1]) - {VAE_KEY, UNET + "only_in_a"}


@pytest.mark.parametrize("prefix", ["", "first_stage_model."])
def test_bake_vae_replaces_first_stage_model_keys(abc, tmp_path, prefix) -> None:
    vae_weight = torch.randn(4, 4, 3, 3, dtype=torch.float64)
    vae = _save(tmp_path / "my.vae.safetensors",
                {prefix + "decoder.conv_in.weight": vae_weight, prefix + "loss.logvar": torch.zeros(1)})
    out = _merge(abc, tmp_path / "v.safetensors", bake_vae=vae, save_as_fp16=True)
    assert torch.equal(out[VAE_KEY], vae_weight.half())
    assert "first_stage_model.loss.logvar" not in out and "loss.logvar" not in out  # only A's keys are replaced
    recipe = json.loads(_metadata(tmp_path / "v.safetensors")["sd_merge_recipe"])
    assert recipe["bake_in_vae"] == "my.vae.safetensors"


def test_bake_vae_that_does_not_fit_is_refused(abc, tmp_path) -> None:
    wrong_shape = _save(tmp_path / "w.safetensors", {"decoder.conv_in.weight": torch.zeros(2, 4, 3, 3)})
    with pytest.raises(MergeError) as caught:
        _merge(abc, tmp_path / "x.safetensors", bake_vae=wrong_shape)
    assert caught.value.field == "bake_vae"
    not_a_vae = _save(tmp_path / "n.safetensors", {"model.diffusion_model.x": torch.zeros(1)})
    with pytest.raises(ModelFileError, match="not a VAE"):
        _merge(abc, tmp_path / "x.safetensors", bake_vae=not_a_vae)
    assert not (tmp_path / "x.safetensors").exists()


def _metadata(path: Path) -> dict[str, str]:
    (length,) = struct.unpack("<Q", path.read_bytes()[:8])
    return json.loads(path.read_bytes()[8:8 + length])["__metadata__"]


def test_recipe_metadata_is_a1111_shaped_and_keeps_history(abc, tmp_path) -> None:
    first = MergeRequest(primary=abc["a"][0], secondary=abc["b"][0], output=tmp_path / "ab.safetensors",
                         multiplier=0.25, discard_weights="only_in")
    merge_checkpoints(first, hash_of=sha256_of_file)
    meta = _metadata(first.output)
    recipe, models = json.loads(meta["sd_merge_recipe"]), json.loads(meta["sd_merge_models"])
    assert meta["format"] == "pt"
    assert recipe == {
        "type": "webui", "primary_model_hash": sha256_of_file(abc["a"][0]),
        "secondary_model_hash": sha256_of_file(abc["b"][0]), "tertiary_model_hash": None,
        "interp_method": "Weighted sum", "multiplier": 0.25, "save_as_half": False, "custom_name": "ab",
        "config_source": 0, "bake_in_vae": "None", "discard_weights": "only_in",
        "is_inpainting": False, "is_instruct_pix2pix": False,
    }
    assert models[sha256_of_file(abc["a"][0])]["name"] == "a.safetensors"
    assert len(models[sha256_of_file(abc["b"][0])]["legacy_hash"]) == 8
    # A merge of the merge records the first merge's recipe and, through it, A and B.
    second = MergeRequest(primary=first.output, secondary=abc["c"][0], output=tmp_path / "abc.safetensors")
    merge_checkpoints(second, hash_of=HashCache(tmp_path / "hashes.json").sha256)
    history = json.loads(_metadata(second.output)["sd_merge_models"])
    assert history[sha256_of_file(first.output)]["sd_merge_recipe"] == recipe
    assert sha256_of_file(abc["a"][0]) in history and sha256_of_file(abc["c"][0]) in history


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"method": "Weighted sum", "secondary": None}, "secondary_model"),
        ({"method": "Add difference", "tertiary": None}, "tertiary_model"),
        ({"method": "Average"}, "method"),
        ({"multiplier": float("nan")}, "multiplier"),
        ({"multiplier": "0.3x"}, "multiplier"),
        ({"discard_weights": "model.(unclosed"}, "discard_weights"),
        ({"output": Path("merged.ckpt")}, "output"),
        ({"config_source": "D"}, "config_source"),
    ],
)
def test_bad_settings_name_their_field(tmp_path, fields, field) -> None:
    base = {"primary": tmp_path / "a.safetensors", "secondary": tmp_path / "b.safetensors",
            "tertiary": tmp_path / "c.safetensors", "output": tmp_path / "o.safetensors"}
    with pytest.raises(MergeError) as caught:
        MergeRequest(**{**base, **fields})
    assert caught.value.field == field and isinstance(caught.value, ValueError)


def test_multiplier_accepts_any_finite_number(abc, tmp_path) -> None:
    out = _merge(abc, tmp_path / "e.safetensors", multiplier=2)
    a, b = abc["a"][1][UNET + "w32"], abc["b"][1][UNET + "w32"]
    assert torch.allclose(out[UNET + "w32"], -a + 2 * b, atol=1e-6)


def test_output_may_not_overwrite_an_input(abc) -> None:
    with pytest.raises(MergeError) as caught:
        _merge(abc, abc["b"][0])
    assert caught.value.field == "output"
    assert torch.equal(load_file(str(abc["b"][0]))[UNET + "w32"], abc["b"][1][UNET + "w32"])


def test_missing_primary_is_a_model_file_error(abc, tmp_path) -> None:
    request = MergeRequest(primary=tmp_path / "nope.safetensors", secondary=abc["b"][0],
                           output=tmp_path / "o.safetensors")
    with pytest.raises(ModelFileError) as caught:
        merge_checkpoints(request)
    assert caught.value.kind == "missing"


def test_failure_midway_leaves_nothing_behind(abc, tmp_path) -> None:
    out = tmp_path / "fail.safetensors"
    out.write_bytes(b"previous merge")  # an older result survives a failed re-merge
    before = sorted(p.name for p in tmp_path.iterdir())
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        if done == 3:
            raise RuntimeError("cancelled")

    request = MergeRequest(primary=abc["a"][0], secondary=abc["b"][0], output=out)
    with pytest.raises(RuntimeError, match="cancelled"):
        merge_checkpoints(request, progress)
    assert seen == [(1, 8), (2, 8), (3, 8)]
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert out.read_bytes() == b"previous merge"


def test_output_appears_only_when_complete(abc, tmp_path) -> None:
    out = tmp_path / "late.safetensors"
    exists_during: list[bool] = []
    request = MergeRequest(primary=abc["a"][0], secondary=abc["b"][0], output=out)
    merge_checkpoints(request, lambda done, total: exists_during.append(out.exists()))
    assert exists_during == [False] * 8 and out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def _conv_state(channels: int) -> dict[str, torch.Tensor]:
    return {UNET + "input_blocks.0.0.weight": torch.randn(6, channels, 3, 3)}


def test_inpainting_a_merges_its_first_four_channels(tmp_path) -> None:
    a = _save(tmp_path / "inpaint.safetensors", _conv_state(9))
    b = _save(tmp_path / "normal.safetensors", _conv_state(4))
    out_path = merge_checkpoints(MergeRequest(primary=a, secondary=b, output=tmp_path / "m.safetensors",
                                              multiplier=0.4))
    key = UNET + "input_blocks.0.0.weight"
    wa, wb, merged = load_file(str(a))[key], load_file(str(b))[key], load_file(str(out_path))[key]
    assert torch.allclose(merged[:, :4], 0.6 * wa[:, :4] + 0.4 * wb, atol=1e-6)
    assert torch.equal(merged[:, 4:], wa[:, 4:])
    assert json.loads(_metadata(out_path)["sd_merge_recipe"])["is_inpainting"] is True
    with pytest.raises(MergeError) as caught:  # A1111: "A must be the inpainting model"
        merge_checkpoints(MergeRequest(primary=b, secondary=a, output=tmp_path / "r.safetensors"))
    assert caught.value.field == "primary_model" and not (tmp_path / "r.safetensors").exists()


def test_pickle_input_needs_allow_pickle_and_then_merges(abc, tmp_path) -> None:
    ckpt = tmp_path / "b.ckpt"
    torch.save({"state_dict": abc["b"][1]}, ckpt)
    request = {"primary": abc["a"][0], "secondary": ckpt, "multiplier": 0.3}
    with pytest.raises(ModelFileError) as caught:
        merge_checkpoints(MergeRequest(**request, output=tmp_path / "p.safetensors"))
    assert caught.value.kind == "pickle_refused"
    from_pickle = load_file(str(merge_checkpoints(
        MergeRequest(**request, output=tmp_path / "p.safetensors", allow_pickle=True))))
    from_safetensors = _merge(abc, tmp_path / "s.safetensors", multiplier=0.3)
    assert all(torch.equal(from_pickle[k], from_safetensors[k]) for k in from_safetensors)


def test_writer_round_trips_and_aligns_every_dtype(tmp_path) -> None:
    tensors = {"f16": torch.randn(3).half(), "f32": torch.randn(2, 3), "i64": torch.arange(5),
               "bf16": torch.randn(3).bfloat16(), "flag": torch.tensor([True, False, True]),
               "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 4), "u8": torch.arange(3, dtype=torch.uint8)}
    specs = [TensorSpec(k, dtype_name(v.dtype), tuple(v.shape)) for k, v in tensors.items()]
    path = write_safetensors(tmp_path / "t.safetensors", specs, lambda spec: tensors[spec.name], {"k": "v"})
    loaded = load_file(str(path))
    assert all(torch.equal(loaded[k], v) and loaded[k].dtype == v.dtype for k, v in tensors.items())
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    assert (8 + length) % 8 == 0 and header["__metadata__"] == {"k": "v"}
    for key, tensor in tensors.items():
        assert header[key]["data_offsets"][0] % tensor.element_size() == 0


def test_writer_rejects_a_tensor_unlike_its_spec(tmp_path) -> None:
    with pytest.raises(ValueError, match="declares"):
        write_safetensors(tmp_path / "t.safetensors", [TensorSpec("x", "F32", (2,))], lambda s: torch.zeros(3))
    assert list(tmp_path.iterdir()) == []


def test_default_output_name_follows_a1111() -> None:
    a, b, c = Path("x/a.safetensors"), Path("b.ckpt"), Path("c.safetensors")
    assert default_output_name("Weighted sum", 0.3, a, b) == "0.7(a) + 0.3(b)"
    assert default_output_name("Add difference", 1, a, b, c) == "a + 1(b - c)"
    assert default_output_name("No interpolation", 0.3, a) == "a"


def test_merged_tiny_sd15_loads_and_generates(tiny_checkpoint_dir, tmp_path) -> None:
    from modules.models.ldm_export import vae_to_ldm
    from modules.models.manager import ModelManager
    from modules.models.registry import CheckpointRegistry
    from modules.processing.generation.txt2img import run_txt2img
    from modules.processing.jobs.job import Job
    from modules.processing.requests import Txt2ImgRequest
    from tests.conftest import CPU_FP32
    from tests.tiny_models import build_tiny_pipeline

    base = tiny_checkpoint_dir / "tiny-sd15.safetensors"
    gen = torch.Generator().manual_seed(0)
    perturbed = {k: v + 0.05 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
                 for k, v in load_file(str(base)).items()}
    other = _save(tmp_path / "perturbed.safetensors", perturbed)
    vae = build_tiny_pipeline("sd15", seed=5).vae
    vae_file = _save(tmp_path / "other.vae.safetensors", vae_to_ldm(vae.state_dict(), vae.config, prefix=""))
    models = tmp_path / "Stable-diffusion"
    request = MergeRequest(primary=base, secondary=other, output=models / "merged.safetensors", multiplier=0.5,
                           save_as_fp16=True, bake_vae=vae_file)
    merge_checkpoints(request)
    assert (models / "merged.config" / "model_index.json").is_file()  # copied from A
    manager = ModelManager(CheckpointRegistry([models], HashCache(tmp_path / "h.json")), CPU_FP32)
    model = manager.get("merged")
    assert torch.allclose(model.pipeline.vae.decoder.conv_in.weight, vae.decoder.conv_in.weight.half().float())
    job = Job(Txt2ImgRequest(prompt="a red circle", width=64, height=64, num_inference_steps=2, seed=3))
    result = run_txt2img(model, job)
    assert result.images[0].size == (64, 64) and "Model: merged" in result.infotexts[0]
