"""The prompt text of extra networks: ``<lora:…>`` tags and textual-inversion names.

Pure text handling, shared by the job (``extra_networks``) and the prompt preview.
``<lora:name:w>`` weights a LoRA's text-encoder and UNet parts alike; ``<lora:name:te:unet>``
or ``<lora:name:te=0.5:unet=1>`` weight them apart (A1111's ``ExtraNetworkParams``:
positional arguments, or named ones with "=").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from modules.processing.prompts.prompt_syntax import strip_comments

__all__ = ["EXTRA_NETWORK", "LoraTag", "embedding_names_in", "embedding_pattern", "lora_tags", "parse_lora_tag",
           "read_tag"]

#: A1111's extra-network syntax, ``<kind:name:args>`` (LoRA, hypernetworks).
EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")


@dataclass(frozen=True)
class LoraTag:
    """One ``<lora:…>`` tag: the name as written and its text-encoder and UNet weights."""

    name: str
    te_weight: float = 1.0
    unet_weight: float = 1.0


def parse_lora_tag(arguments: str) -> LoraTag:
    """Parse what follows ``<lora:`` up to ``>``: ``name[:te[:unet[:dyn]]]`` and/or ``te=``/``unet=``.

    The UNet weight defaults to the text-encoder weight, as in A1111.

    Raises:
        ValueError: no name, or a weight that is not a number (the message quotes it).
    """
    items = [item.strip() for item in arguments.split(":")]
    positional = [item for item in items if "=" not in item]
    named = {key.strip(): value for key, value in (item.split("=", 1) for item in items if "=" in item)}
    if not positional or not positional[0]:
        raise ValueError(f"<lora:{arguments}> names no LoRA")

    def number(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"<lora:{arguments}>: weight {text!r} is not a number") from None

    te_weight = number(named.get("te", positional[1] if len(positional) > 1 else "1"))
    unet_weight = number(named.get("unet", positional[2] if len(positional) > 2 else str(te_weight)))
    return LoraTag(positional[0], te_weight, unet_weight)


def read_tag(kind: str, arguments: str) -> tuple[LoraTag | None, str | None]:
    """One ``<kind:arguments>`` tag: its LoRA, or None and why it will not be applied."""
    if kind not in ("lora", "lyco"):
        return None, f"<{kind}:{arguments}> ({kind} networks are not supported; use <lora:…>)"
    try:
        return parse_lora_tag(arguments), None
    except ValueError as error:
        return None, str(error)


def lora_tags(prompts: Sequence[str]) -> tuple[list[LoraTag], list[str]]:
    """The LoRA tags of the prompts (each name once, first tag wins) and notices about the rest."""
    tags: dict[str, LoraTag] = {}
    notices = []
    for prompt in prompts:
        for kind, arguments in EXTRA_NETWORK.findall(strip_comments(prompt)):
            tag, problem = read_tag(kind, arguments)
            if tag is None:
                notices.append(f"Not applied: {problem}")
            else:
                tags.setdefault(tag.name, tag)
    return list(tags.values()), notices


def embedding_pattern(names: Iterable[str]) -> re.Pattern[str] | None:
    """A regex finding any of ``names`` as a whole word (group 1), or None for no names.

    Longest names first, so "style-v2" wins over "style"; never inside a longer word.
    """
    ordered = sorted(names, key=len, reverse=True)
    if not ordered:
        return None
    return re.compile(r"(?<![\w-])(" + "|".join(re.escape(n) for n in ordered) + r")(?![\w-])")


def embedding_names_in(prompts: Sequence[str], names: Sequence[str]) -> list[str]:
    """The embedding ``names`` written in the prompts (outside comments and extra-network tags)."""
    pattern = embedding_pattern(names)
    if pattern is None:
        return []
    found: dict[str, None] = {}
    for prompt in prompts:
        for match in pattern.finditer(EXTRA_NETWORK.sub(" ", strip_comments(prompt))):
            found.setdefault(match.group(1))
    return list(found)
