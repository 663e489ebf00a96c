"""A job's extra networks: the LoRAs its prompts' ``<lora:…>`` tags name, applied for the job,
and the textual-inversion embeddings its prompts write (tag syntax: ``network_tags``).

A LoRA or embedding that cannot be used is reported in the result's notices and the job
runs without it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from modules.models.embeddings import Embedding
from modules.models.files import ModelFileError
from modules.models.loader import LoadedModel
from modules.models.lora import LoraUse, loras_applied
from modules.models.memory import MemoryPolicy
from modules.processing.prompts.network_tags import LoraTag, embedding_names_in, lora_tags

__all__ = ["JobNetworks", "extra_networks_applied"]


@dataclass
class JobNetworks:
    """What a job's prompts ask for, as applied: embeddings to use, infotext, notices."""

    embeddings: dict[str, Embedding] = field(default_factory=dict)
    infotext: dict[str, str] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)


def _infotext_list(entries: Mapping[str, str]) -> str:
    # A1111 drops ":" and "," from names so the list parses back.
    return ", ".join(f"{re.sub('[:,]', '', name)}: {digest}" for name, digest in entries.items())


def _usable_embeddings(model: LoadedModel, prompts: Sequence[str], networks: JobNetworks) -> None:
    """Load the embeddings the prompts name that fit every text encoder of ``model``."""
    library = model.embeddings
    if library is None:
        return
    library.refresh()  # a file scan (no loading), so embeddings added since the last job are found
    widths = [e.config.hidden_size for e in (model.pipeline.text_encoder, getattr(model.pipeline, "text_encoder_2",
                                                                                  None)) if e is not None]
    hashes = {}
    for name in embedding_names_in(prompts, [f.name for f in library.files]):
        file = library.find(name)
        try:
            embedding = library.load(file)
        except ModelFileError as error:
            networks.notices.append(f"Embedding {name} not used: {error.detail}")
            continue
        if not embedding.fits(widths):
            have = " and ".join(str(v.shape[-1]) for v in embedding.vectors)
            networks.notices.append(f"Embedding {name} not used: it was trained for another model family "
                                    f"(vectors {have} wide; this model's text encoders take "
                                    f"{' and '.join(map(str, widths))})")
            continue
        networks.embeddings[name] = embedding
        hashes[name] = library.short_hash(file)
    if hashes:
        networks.infotext["TI hashes"] = _infotext_list(hashes)


def _lora_uses(model: LoadedModel, tags: Sequence[LoraTag], networks: JobNetworks) -> list[LoraUse]:
    if tags and model.offload is not None and model.offload.policy is MemoryPolicy.SEQUENTIAL_OFFLOAD:
        # diffusers would strip the per-layer offload hooks to inject the LoRA and put back its
        # own, not ours; until that is handled, say so instead of breaking the model.
        names = ", ".join(f"<lora:{tag.name}>" for tag in tags)
        networks.notices.append(f"LoRA not applied with --lowvram (use --medvram for LoRAs): {names}")
        return []
    uses = []
    for tag in tags:
        file = model.loras.find(tag.name) if model.loras is not None else None
        if file is None:
            folders = ", ".join(str(r) for r in model.loras.roots) if model.loras is not None else ""
            where = f"looked in {folders}" if folders else "no LoRA folder is set"
            networks.notices.append(f"LoRA not found: <lora:{tag.name}> ({where})")
            continue
        uses.append(LoraUse(file, tag.te_weight, tag.unet_weight))
    return uses


@contextlib.contextmanager
def extra_networks_applied(model: LoadedModel, prompts: Sequence[str]) -> Iterator[JobNetworks]:
    """Apply the prompts' LoRAs to ``model`` for the ``with`` block and find their embeddings.

    On leaving the block every LoRA is removed again, also when the job failed.
    """
    tags, notices = lora_tags(prompts)
    networks = JobNetworks(notices=notices)
    uses = _lora_uses(model, tags, networks)
    _usable_embeddings(model, prompts, networks)
    if not uses:
        yield networks
        return
    with loras_applied(model.pipeline, model.loras, uses) as outcome:
        networks.notices.extend(f"LoRA not applied: {failure}" for failure in outcome.failures)
        hashes = {use.file.name: model.loras.short_hash(use.file) for use in outcome.applied}
        if hashes:
            networks.infotext = {"Lora hashes": _infotext_list(hashes), **networks.infotext}
        yield networks
