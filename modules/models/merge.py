"""Checkpoint Merger (A1111's "Checkpoint Merger" tab), streamed one tensor at a time.

A1111 (``modules/extras.py: run_modelmerger``) loads A, B and C whole and merges in place,
so merging two SDXL models needs about 20 GB of RAM. Here every input stays on disk
(``safetensors.safe_open`` reads one key at a time) and the output is written by
:mod:`modules.models.merge_writer` as each tensor is computed, so memory holds a few
tensors, not models. Pickle inputs (.ckpt) have no random access: with ``allow_pickle`` they
are loaded whole (``torch.load(weights_only=True)``) and then read from memory.

Semantics follow A1111, per key of A:
    Weighted sum      (1 - M)·A + M·B
    Add difference    A + M·(B - C)
    No interpolation  A            (B and C are ignored; used to bake a VAE, cast to fp16, prune)
Keys that B (or C) lacks, non-float tensors, schedule buffers (keys without "model") and
tensors whose shapes differ are copied from A, except an inpainting (9-channel) or
instruct-pix2pix (8-channel) ``conv_in`` of A against B's 4 channels, where only the shared
4 channels are merged, as A1111 does.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch

from modules.models.files import SAFETENSORS_SUFFIXES, ModelFileError, load_state_dict, read_safetensors_header
from modules.models.merge_metadata import copy_config, merge_models_metadata
from modules.models.merge_writer import FLOAT_DTYPES, TORCH_DTYPES, TensorSpec, dtype_name, write_safetensors

__all__ = [
    "CONFIG_SOURCES", "METHODS", "MergeError", "MergeRequest", "default_output_name", "merge_checkpoints",
]

NO_INTERPOLATION, WEIGHTED_SUM, ADD_DIFFERENCE = "No interpolation", "Weighted sum", "Add difference"
#: A1111's "Interpolation Method" choices, in its order.
METHODS = (NO_INTERPOLATION, WEIGHTED_SUM, ADD_DIFFERENCE)
#: A1111's "Copy config from" choices; the recipe stores the index, as A1111 does (``type="index"``).
CONFIG_SOURCES = ("A, B or C", "B", "C", "Don't")
VAE_PREFIX = "first_stage_model."
#: A1111's ``checkpoint_dict_skip_on_merge``: position ids are indices stored as floats in old
#: checkpoints; interpolating them makes them fractional and breaks the text encoder.
SKIP_ON_MERGE = frozenset({"cond_stage_model.transformer.text_model.embeddings.position_ids"})

HashOf = Callable[[Path], str]


class MergeError(ValueError):
    """A merge setting is unusable.

    Attributes:
        field: the setting, e.g. "secondary_model", "multiplier", "discard_weights", "output".
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, kw_only=True)
class MergeRequest:
    """What to merge, validated on construction (files are checked when the merge runs).

    Attributes:
        primary / secondary / tertiary: models A, B and C (.safetensors, or pickles when
            ``allow_pickle``). B is needed by "Weighted sum" and "Add difference", C by the latter.
        output: the merged file; must end in ".safetensors" and differ from the inputs.
        multiplier: M, any finite float (A1111's slider spans 0..1; other values extrapolate).
        method: one of :data:`METHODS`.
        save_as_fp16: store every floating-point tensor as float16.
        bake_vae: a VAE file whose weights replace A's ``first_stage_model.*`` (its keys may
            carry that prefix or not).
        discard_weights: a regex; keys it matches (``re.search``) are left out. "" keeps all.
        allow_pickle: accept pickle inputs, loaded whole with ``torch.load(weights_only=True)``.
        config_source: one of :data:`CONFIG_SOURCES`: whose ``<stem>.yaml`` and ``<stem>.config/``
            to copy beside the output.
    """

    primary: Path
    output: Path
    secondary: Path | None = None
    tertiary: Path | None = None
    multiplier: float = 0.3
    method: str = WEIGHTED_SUM
    save_as_fp16: bool = False
    bake_vae: Path | None = None
    discard_weights: str = ""
    allow_pickle: bool = False
    config_source: str = CONFIG_SOURCES[0]

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise MergeError("method", f"unknown interpolation method {self.method!r}; expected one of {METHODS}")
        if self.method != NO_INTERPOLATION and self.secondary is None:
            raise MergeError("secondary_model", f"{self.method} needs a secondary model (B)")
        if self.method == ADD_DIFFERENCE and self.tertiary is None:
            raise MergeError("tertiary_model", f"{self.method} needs a tertiary model (C)")
        try:
            multiplier = float(self.multiplier)
        except (TypeError, ValueError):
            multiplier = math.nan
        if not math.isfinite(multiplier):
            raise MergeError("multiplier", f"multiplier must be a finite number, not {self.multiplier!r}")
        object.__setattr__(self, "multiplier", multiplier)  # a UI may hand over an int or a numpy float
        try:
            re.compile(self.discard_weights)
        except re.error as error:
            raise MergeError("discard_weights", f"invalid regular expression {self.discard_weights!r}: "
                             f"{error}") from None
        if self.output.suffix.lower() != ".safetensors":
            raise MergeError("output", f"the merged model must be a .safetensors file, not {self.output.name!r}")
        if self.config_source not in CONFIG_SOURCES:
            raise MergeError("config_source", f"expected one of {CONFIG_SOURCES}, not {self.config_source!r}")

    @property
    def used_secondary(self) -> Path | None:
        """B if the method reads it, else None (A1111 drops unused models from the recipe)."""
        return None if self.method == NO_INTERPOLATION else self.secondary

    @property
    def used_tertiary(self) -> Path | None:
        """C if the method reads it, else None."""
        return self.tertiary if self.method == ADD_DIFFERENCE else None


def default_output_name(method: str, multiplier: float, primary: Path, secondary: Path | None = None,
                        tertiary: Path | None = None) -> str:
    """A1111's file name for an unnamed merge, without extension, e.g. "0.7(a) + 0.3(b)"
    or "a + 0.3(b - c)"; A1111 then appends ".inpainting" for inpainting results."""
    if method == WEIGHTED_SUM and secondary is not None:
        return f"{round(1 - multiplier, 2)}({primary.stem}) + {round(multiplier, 2)}({secondary.stem})"
    if method == ADD_DIFFERENCE and secondary is not None and tertiary is not None:
        return f"{primary.stem} + {round(multiplier, 2)}({secondary.stem} - {tertiary.stem})"
    return primary.stem


@dataclass(frozen=True)
class _Source:
    """One input file: tensor dtypes/shapes from its header, and a reader for single keys."""

    path: Path
    specs: Mapping[str, TensorSpec]
    metadata: Mapping[str, str]
    read: Callable[[str], torch.Tensor]


@dataclass(frozen=True)
class _Inputs:
    a: _Source
    b: _Source | None
    c: _Source | None
    vae: _Source | None


@dataclass(frozen=True)
class _KeyPlan:
    """How one output tensor is made. ``rule``: "copy" (from A), "merge", "partial" (merge the
    first B-channels of A's dim 1 only) or "vae" (the baked VAE's ``source_key``)."""

    spec: TensorSpec
    rule: str
    source_key: str


def _open_source(path: Path, allow_pickle: bool, stack: ExitStack) -> _Source:
    """Open a model file for key-by-key reading; the header is validated before any data is read.

    Raises:
        ModelFileError: missing, broken, refused pickle, or a dtype torch cannot hold.
    """
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        from safetensors import safe_open

        header = read_safetensors_header(path)
        for key, entry in header.tensors.items():
            if entry["dtype"] not in TORCH_DTYPES:
                raise ModelFileError(path, "unsupported", f"has tensor {key!r} of dtype {entry['dtype']}, "
                                     "which cannot be merged")
        specs = {k: TensorSpec(k, e["dtype"], tuple(e["shape"])) for k, e in header.tensors.items()}
        handle = stack.enter_context(safe_open(str(path), framework="pt", device="cpu"))
        return _Source(path, specs, dict(header.metadata), handle.get_tensor)
    # A pickle has no index to seek by: it is loaded whole, once, and kept for the merge.
    state = load_state_dict(path, allow_pickle=allow_pickle)
    try:
        specs = {k: TensorSpec(k, dtype_name(v.dtype), tuple(v.shape)) for k, v in state.items()}
    except ValueError as error:
        raise ModelFileError(path, "unsupported", str(error)) from None
    return _Source(path, specs, {}, state.__getitem__)


def _open_inputs(request: MergeRequest, stack: ExitStack) -> _Inputs:
    """Open A, the B/C the method uses, and the VAE to bake, refusing an output that is an input."""
    paths = [request.primary, request.used_secondary, request.used_tertiary, request.bake_vae]
    output = request.output.resolve()
    if any(p is not None and p.resolve() == output for p in paths):
        raise MergeError("output", f"{request.output} is one of the inputs; choose another output name")
    a, b, c, vae = (None if p is None else _open_source(p, request.allow_pickle, stack) for p in paths)
    assert a is not None
    if vae is not None and not any(k.endswith("decoder.conv_in.weight") for k in vae.specs):
        raise ModelFileError(vae.path, "unsupported", "is not a VAE (no decoder weights)")
    return _Inputs(a, b, c, vae)


def _channel_rule(key: str, a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> str:
    """Rule for a 4-D weight whose input channels differ between A and B (A1111's inpainting rule):
    an inpainting UNet's conv_in takes 9 channels (4 latent + 4 masked-image latent + 1 mask),
    instruct-pix2pix's 8; the first 4 are the ones a normal model has, so only those are merged."""
    same_elsewhere = len(a_shape) == len(b_shape) == 4 and a_shape[0] == b_shape[0] and a_shape[2:] == b_shape[2:]
    if not same_elsewhere:
        return "copy"  # a different architecture's layer: there is nothing to interpolate with
    if a_shape[1] == 4 and b_shape[1] in (8, 9):
        raise MergeError("primary_model", f"{key}: when merging an inpainting or instruct-pix2pix model with a "
                         "normal one, A must be the inpainting/instruct-pix2pix model")
    return "partial" if a_shape[1] in (8, 9) and b_shape[1] == 4 else "copy"


def _merge_rule(key: str, a: TensorSpec, inputs: _Inputs, method: str) -> str:
    """How key ``key`` of A combines with B and C, decided from the headers alone."""
    # A1111 merges only keys containing "model"; the others are noise-schedule buffers
    # (betas, alphas_cumprod) that describe training, not learned weights.
    if method == NO_INTERPOLATION or key in SKIP_ON_MERGE or "model" not in key or a.dtype not in FLOAT_DTYPES:
        return "copy"
    assert inputs.b is not None
    b = inputs.b.specs.get(key)
    if b is None or b.dtype not in FLOAT_DTYPES:
        return "copy"
    if inputs.c is not None:
        c = inputs.c.specs.get(key)
        # A1111 sets B - C to zero for keys C lacks, so A + M·0 = A; a C shaped unlike B is the same case.
        if c is None or c.dtype not in FLOAT_DTYPES or c.shape != b.shape:
            return "copy"
    return "merge" if b.shape == a.shape else _channel_rule(key, a.shape, b.shape)


def _vae_key(key: str, vae: _Source) -> str | None:
    """The VAE file's key for checkpoint key ``first_stage_model.X``: "X" or the prefixed form."""
    if not key.startswith(VAE_PREFIX):
        return None
    for candidate in (key, key[len(VAE_PREFIX):]):
        if candidate in vae.specs:
            return candidate
    return None


def _plan_key(key: str, a: TensorSpec, inputs: _Inputs, request: MergeRequest) -> _KeyPlan:
    """The output spec and rule of one key of A (dtype: A's, or F16 for floats with ``save_as_fp16``)."""
    dtype = "F16" if request.save_as_fp16 and a.dtype in FLOAT_DTYPES else a.dtype
    vae_key = _vae_key(key, inputs.vae) if inputs.vae is not None else None
    if vae_key is not None:
        assert inputs.vae is not None
        vae_shape = inputs.vae.specs[vae_key].shape
        if vae_shape != a.shape:
            raise MergeError("bake_vae", f"{inputs.vae.path.name} does not fit this checkpoint: {vae_key} is "
                             f"{list(vae_shape)}, the checkpoint's {key} is {list(a.shape)}")
        return _KeyPlan(TensorSpec(key, dtype, a.shape), "vae", vae_key)
    return _KeyPlan(TensorSpec(key, dtype, a.shape), _merge_rule(key, a, inputs, request.method), key)


def _plan(request: MergeRequest, inputs: _Inputs) -> dict[str, _KeyPlan]:
    """Every output tensor, in A's key order, minus the discarded keys."""
    discard = re.compile(request.discard_weights) if request.discard_weights else None
    plans = {key: _plan_key(key, spec, inputs, request) for key, spec in inputs.a.specs.items()}
    if inputs.vae is not None and not any(plan.rule == "vae" for plan in plans.values()):
        raise MergeError("bake_vae", f"no weight of {inputs.vae.path.name} matches the checkpoint's "
                         f"{VAE_PREFIX}* keys (a diffusers-format VAE? use an LDM/A1111 one)")
    # A1111 discards after baking the VAE, so a pattern can drop baked keys too.
    return {key: plan for key, plan in plans.items() if discard is None or not discard.search(key)}


def _combine(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None, method: str, m: float) -> torch.Tensor:
    """Weighted sum (1 - M)·A + M·B, or add difference A + M·(B - C) (A1111's theta_func2)."""
    if method == ADD_DIFFERENCE:
        assert c is not None
        return a + m * (b - c)
    return (1 - m) * a + m * b


def _produce(plan: _KeyPlan, inputs: _Inputs, request: MergeRequest) -> torch.Tensor:
    """Read and compute one output tensor, in float32 (float64 if an input is), cast to its spec."""
    key, out_dtype = plan.spec.name, TORCH_DTYPES[plan.spec.dtype]
    if plan.rule == "vae":
        assert inputs.vae is not None
        return inputs.vae.read(plan.source_key).to(out_dtype)
    a = inputs.a.read(key)
    if plan.rule == "copy":
        return a.to(out_dtype)
    assert inputs.b is not None
    b = inputs.b.read(key)
    c = inputs.c.read(key) if inputs.c is not None else None
    work = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    c_work = c.to(work) if c is not None else None
    if plan.rule == "merge":
        return _combine(a.to(work), b.to(work), c_work, request.method, request.multiplier).to(out_dtype)
    # "partial": copy=True because a pickle source hands out its own tensor, which must stay intact.
    result = a.to(work, copy=True)
    channels = b.shape[1]
    result[:, :channels] = _combine(result[:, :channels], b.to(work), c_work, request.method, request.multiplier)
    return result.to(out_dtype)


def _metadata(request: MergeRequest, plans: Mapping[str, _KeyPlan], inputs: _Inputs,
              hash_of: HashOf | None) -> dict[str, str]:
    """The output's ``__metadata__``: "format", "sd_merge_recipe" and "sd_merge_models" as A1111 writes them."""
    partial_channels = {plan.spec.shape[1] for plan in plans.values() if plan.rule == "partial"}
    sources = [s for s in (inputs.a, inputs.b, inputs.c) if s is not None]
    hashes = {s.path: hash_of(s.path) for s in sources} if hash_of is not None else {}
    b_path, c_path = request.used_secondary, request.used_tertiary
    recipe = {
        "type": "webui",  # A1111: "indicate this model was merged with webui's built-in merger"
        "primary_model_hash": hashes.get(request.primary),
        "secondary_model_hash": hashes.get(b_path) if b_path is not None else None,
        "tertiary_model_hash": hashes.get(c_path) if c_path is not None else None,
        "interp_method": request.method,
        "multiplier": request.multiplier,
        "save_as_half": request.save_as_fp16,
        "custom_name": request.output.stem,
        "config_source": CONFIG_SOURCES.index(request.config_source),
        "bake_in_vae": request.bake_vae.name if request.bake_vae is not None else "None",
        "discard_weights": request.discard_weights,
        "is_inpainting": 9 in partial_channels,
        "is_instruct_pix2pix": 8 in partial_channels,
    }
    by_hash = hashes.__getitem__ if hash_of is not None else None  # hash each file once
    models = merge_models_metadata([(s.path, s.metadata) for s in sources], by_hash)
    return {"format": "pt", "sd_merge_recipe": json.dumps(recipe), "sd_merge_models": json.dumps(models)}


def merge_checkpoints(
    request: MergeRequest,
    progress: Callable[[int, int], None] | None = None,
    hash_of: HashOf | None = None,
) -> Path:
    """Merge checkpoints as ``request`` says and write the result to ``request.output``.

    Inputs are read one tensor at a time and the output is written as it is computed, so
    peak memory is a few tensors (plus any pickle input, which is loaded whole). The file
    appears only when complete; on any error, including one raised by ``progress``, no output
    or temporary file is left behind.

    Args:
        request: the validated settings.
        progress: called as ``progress(done, total)`` after each output tensor is written.
        hash_of: full SHA-256 of an input file (e.g. ``HashCache.sha256``) for the recipe
            metadata; None records null hashes and keys ``sd_merge_models`` by file name.

    Returns:
        ``request.output``.

    Raises:
        MergeError: settings that do not fit the files (output is an input, VAE mismatch,
            A is the normal model against an inpainting B).
        ModelFileError: a missing or broken input, or a refused pickle.
    """
    with ExitStack() as stack:
        # 1. Open the inputs: headers are validated, nothing big is read yet.
        inputs = _open_inputs(request, stack)
        # 2. Decide every output tensor's rule, dtype and shape from the headers.
        plans = _plan(request, inputs)
        # 3. Metadata (hashing may take a while on big files; done before the output exists).
        metadata = _metadata(request, plans, inputs, hash_of)
        # 4. Stream: header first, then each tensor as it is computed.
        write_safetensors(request.output, [plan.spec for plan in plans.values()],
                          lambda spec: _produce(plans[spec.name], inputs, request), metadata, progress)
    a, b, c = request.primary, request.used_secondary, request.used_tertiary
    choices = {"A, B or C": (a, b, c), "B": (b,), "C": (c,), "Don't": ()}[request.config_source]
    copy_config([p for p in choices if p is not None], request.output)
    return request.output
