"""Loading checkpoints into diffusers pipelines, fully offline.

Configs come from the folders shipped in ``modules/models/configs`` (or the checkpoint's own
``<stem>.config/`` folder, which wins); the CLIP tokenizer is built from the BPE files shipped
in ``configs/clip_tokenizer``. Nothing is fetched from a model hub. The safety checker is never
instantiated.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modules.families.base import ModelFamily, PartFolders, UnknownFamilyError
from modules.families.registry import detect_family
from modules.models.embeddings import EmbeddingLibrary
from modules.models.files import ModelFileError, load_state_dict, public_text, read_safetensors_header
from modules.models.lora import LoraLibrary
from modules.models.memory import MemoryPolicy
from modules.models.registry import CheckpointInfo
from modules.paths import CONFIGS_DIR

__all__ = ["LoadedModel", "build_clip_tokenizer", "detect_v_prediction", "load_checkpoint"]

logger = logging.getLogger(__name__)

CLIP_VOCAB_SIZE = 49408
_TOKENIZER_DIR = CONFIGS_DIR / "clip_tokenizer"


@dataclass
class LoadedModel:
    """A checkpoint in memory, ready to generate.

    Attributes:
        info: the registry entry it came from.
        family: its family.
        pipeline: the diffusers pipeline holding UNet, VAE, text encoder(s) and tokenizer(s).
        scheduler_config: the model's noise schedule (betas, prediction type) as a dict.
        device / dtype: the execution device (where latents, noise and conditioning must be)
            and the weights' precision. With offload the weights wait on the CPU.
        short_hash: A1111 "Model hash" (None for diffusers folders).
        builtin_vae: the checkpoint's own VAE, kept while an external one is in use.
        vae_file / vae_hash: the external VAE in ``pipeline.vae`` and its short hash, or None.
        offload: the ``ComponentOffload`` of ``--medvram``/``--lowvram``, or None.
        loras / embeddings: the ``LoraLibrary`` and ``EmbeddingLibrary`` prompts can use with
            it (set by the model manager; None when loaded on its own).
        part_files: the part files it runs with besides the checkpoint (FLUX.1's VAE and text
            encoders from their folders), for the infotext.
    """

    info: CheckpointInfo
    family: ModelFamily
    pipeline: Any
    scheduler_config: dict[str, Any]
    device: torch.device
    dtype: torch.dtype
    short_hash: str | None
    builtin_vae: Any = None
    vae_file: Any = None
    vae_hash: str | None = None
    offload: Any = None
    loras: LoraLibrary | None = None
    embeddings: EmbeddingLibrary | None = None
    part_files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.builtin_vae is None:
            self.builtin_vae = self.pipeline.vae

    @property
    def name(self) -> str:
        """A1111 "Model" infotext value: the file name without extension."""
        return Path(self.info.name).name

    @property
    def denoising_module(self) -> torch.nn.Module:
        """The network the loop runs: the UNet, or the family's transformer (``FamilyCode``)."""
        code = self.family.code
        return self.pipeline.unet if code is None else getattr(self.pipeline, code.denoising_component)

    def denoiser(self, module: torch.nn.Module, distilled_guidance: float | None = None) -> torch.nn.Module:
        """``module`` (the denoising module, or its per-job patched clone) called as the loop
        calls a UNet; ``distilled_guidance`` goes to families that take it (FLUX.1-dev)."""
        code = self.family.code
        return module if code is None else code.denoiser(module, distilled_guidance)

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.pipeline.vae.config.block_out_channels) - 1)


def build_clip_tokenizer(pad_token: str = "<|endoftext|>") -> Any:
    """The CLIP BPE tokenizer (49,408 tokens) from the files shipped in the repository.

    SD1.x and SDXL's first encoder pad with "<|endoftext|>"; OpenCLIP encoders (SD2.x, SDXL's
    second) pad with "!" (token 0).
    """
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer(
        vocab=str(_TOKENIZER_DIR / "vocab.json"), merges=str(_TOKENIZER_DIR / "merges.txt"), pad_token=pad_token
    )
    tokenizer.model_max_length = 77
    if len(tokenizer) != CLIP_VOCAB_SIZE:
        raise RuntimeError(f"CLIP tokenizer has {len(tokenizer)} tokens instead of {CLIP_VOCAB_SIZE}; "
                           f"the files in {_TOKENIZER_DIR} are damaged")
    return tokenizer


def _tokenizers(family: ModelFamily) -> dict[str, Any]:
    if family.base == "sdxl":
        return {"tokenizer": build_clip_tokenizer(), "tokenizer_2": build_clip_tokenizer(pad_token="!")}
    pad = "!" if family.base == "sd2" else "<|endoftext|>"
    return {"tokenizer": build_clip_tokenizer(pad_token=pad)}


@torch.inference_mode()
def detect_v_prediction(unet: Any) -> bool:
    """Whether an SD2.x UNet predicts velocity rather than noise.

    The weights do not say, so ask the model, as A1111 does: at t=999 a uniform 0.5 latent is
    almost pure noise; an epsilon model returns roughly its input, a v-prediction model
    returns roughly minus the clean image, so the mean of (output - input) falls below -1.
    """
    param = next(unet.parameters())
    latent = torch.full((1, unet.config.in_channels, 8, 8), 0.5, device=param.device, dtype=param.dtype)
    context = torch.full((1, 2, unet.config.cross_attention_dim), 0.5, device=param.device, dtype=param.dtype)
    timestep = torch.tensor([999], device=param.device)
    out = unet(latent, timestep, encoder_hidden_states=context, return_dict=False)[0]
    return bool((out[:, :4] - latent[:, :4]).float().mean() < -1)


def _safetensors_source(info: CheckpointInfo, allow_pickle: bool, scratch: Path) -> tuple[Path, ModelFamily]:
    """The safetensors file to load and its family; pickle checkpoints are converted first."""
    if info.path.suffix.lower() in (".safetensors", ".sft"):
        assert info.family is not None
        return info.path, info.family
    from safetensors.torch import save_file

    state = load_state_dict(info.path, allow_pickle=allow_pickle)
    try:
        family = detect_family(lambda key: key in state, lambda key: tuple(state[key].shape) if key in state else None)
    except UnknownFamilyError as error:
        raise ModelFileError(info.path, "unsupported", str(error)) from None
    converted = scratch / (info.path.stem + ".safetensors")
    save_file({k: v.contiguous() for k, v in state.items()}, str(converted))
    return converted, family


def _yaml_parameterization(info: CheckpointInfo) -> str | None:
    """``model.params.parameterization`` from an A1111-style ``<name>.yaml`` beside the file.

    A1111 users ship SD2.x v-prediction models with such a yaml; it is the one fact we take
    from it (all other configs come from our config folders).
    """
    yaml_path = info.path.with_suffix(".yaml")
    if not yaml_path.is_file():
        return None
    import yaml

    try:
        config = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        raise ModelFileError(yaml_path, "unsupported", "is not a readable YAML model config") from None
    if not isinstance(config, dict):
        raise ModelFileError(yaml_path, "unsupported", "is not an LDM model config (not a YAML mapping)")
    params = (config.get("model") or {}).get("params") if isinstance(config.get("model"), dict) else None
    if not isinstance(params, dict):
        return None  # nothing said about the parameterization: the config folder decides
    return "v_prediction" if params.get("parameterization", "eps") == "v" else "epsilon"


def _prediction_type(info: CheckpointInfo, family: ModelFamily, has_v_key: bool, unet: Any) -> str | None:
    """What the UNet predicts, when something overrides the config folder's value:
    a ``v_pred`` marker key, then a ``<name>.yaml``, then (SD2.x without its own config
    folder) probing the UNet. None keeps the config folder's value."""
    if has_v_key:
        return "v_prediction"
    from_yaml = _yaml_parameterization(info)
    if from_yaml is not None:
        return from_yaml
    if family.id == "sd2" and info.config_dir is None:
        return "v_prediction" if detect_v_prediction(unet) else "epsilon"
    return None


def _from_single_file(info: CheckpointInfo, allow_pickle: bool, dtype: torch.dtype) -> tuple[Any, ModelFamily]:
    import diffusers
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    with tempfile.TemporaryDirectory(prefix="aigen-convert-") as scratch:
        source, family = _safetensors_source(info, allow_pickle, Path(scratch))
        # Validated again at load time: the file may have changed since it was listed.
        has_v_key = "v_pred" in read_safetensors_header(source).tensors
        config_dir = info.config_dir or family.config_dir
        pipeline_cls = getattr(diffusers, family.pipeline_class)
        try:
            pipeline = pipeline_cls.from_single_file(
                str(source), config=str(config_dir), local_files_only=True, torch_dtype=dtype,
                safety_checker=None, feature_extractor=None, **_tokenizers(family),
            )
        except (NotImplementedError, SingleFileComponentError):
            # torch refuses to copy weights that were never loaded; diffusers finds a whole
            # component (text encoder, VAE) missing: a partial file either way.
            raise ModelFileError(info.path, "incomplete", f"lacks weights of a {family.label} checkpoint "
                                 "(truncated export or a partial file)") from None
        except (RuntimeError, KeyError, ValueError, OSError) as error:
            raise ModelFileError(info.path, "unsupported", f"could not be loaded as {family.label} "
                                 f"with the {config_dir.name} configs: {public_text(str(error))}") from None
    prediction = _prediction_type(info, family, has_v_key, pipeline.unet)
    if prediction is not None:
        pipeline.scheduler = pipeline.scheduler.from_config(pipeline.scheduler.config, prediction_type=prediction)
    return pipeline, family


def _check_complete(pipeline: Any, path: Path) -> None:
    """Raise if any weight stayed unloaded: diffusers leaves missing tensors on the meta
    device without an error, which would only fail later, mid-generation."""
    for component in ("unet", "transformer", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipeline, component, None)
        if module is None:
            continue
        missing = [name for name, tensor in (*module.named_parameters(), *module.named_buffers()) if tensor.is_meta]
        if missing:
            raise ModelFileError(path, "incomplete", f"lacks {len(missing)} {component} weights "
                                 f"(e.g. {missing[0]}): not a complete checkpoint of its family")


def _from_diffusers_folder(info: CheckpointInfo, dtype: torch.dtype) -> tuple[Any, ModelFamily]:
    import diffusers

    assert info.family is not None
    pipeline_cls = getattr(diffusers, info.family.pipeline_class)
    extra: dict[str, Any] = {"safety_checker": None, "feature_extractor": None}
    if not (info.path / "tokenizer" / "vocab.json").is_file():
        extra.update(_tokenizers(info.family))
    pipeline = pipeline_cls.from_pretrained(str(info.path), local_files_only=True, torch_dtype=dtype, **extra)
    return pipeline, info.family


def load_checkpoint(
    info: CheckpointInfo,
    device: torch.device,
    dtype: torch.dtype,
    short_hash: str | None = None,
    allow_pickle: bool = False,
    memory: MemoryPolicy = MemoryPolicy.FULL,
    parts: PartFolders | None = None,
) -> LoadedModel:
    """Load a registry entry into a pipeline on ``device`` in ``dtype``.

    With an offload ``memory`` policy the weights stay in CPU memory and visit ``device``
    while they run (see ``modules.models.memory``). ``parts``: where a family that takes its
    text encoders and VAE from files of their own (FLUX.1) finds them, and the user's choice.

    Raises:
        ModelFileError: the file is broken, refused (pickle) or not a supported model.
        ModelPartError: a part such a family needs is missing or ambiguous (the file is fine).
    """
    if info.error is not None:
        raise ModelFileError(info.path, "unsupported", info.error)
    logger.info("loading %s on %s (%s)", info.path, device, dtype)
    part_files: tuple[str, ...] = ()
    if info.family is not None and info.family.code is not None:
        loaded = info.family.code.load(info.path, parts or PartFolders(), dtype)
        pipeline, family, part_files = loaded.pipeline, info.family, loaded.part_files
    elif info.is_diffusers_folder:
        pipeline, family = _from_diffusers_folder(info, dtype)
    else:
        pipeline, family = _from_single_file(info, allow_pickle, dtype)
    _check_complete(pipeline, info.path)
    pipeline.set_progress_bar_config(disable=True)
    offload = None
    if memory is not MemoryPolicy.FULL:
        from modules.models.offload import ComponentOffload

        offload = ComponentOffload(memory, device)
        offload.attach_pipeline(pipeline)
    elif device.type != "cpu":  # weights are loaded on the CPU; moving them there again only warns
        pipeline.to(device)
    return LoadedModel(info, family, pipeline, dict(pipeline.scheduler.config), device, dtype, short_hash,
                       offload=offload, part_files=part_files)
