"""🔍 under the prompt: a prompt plan (``modules.processing.prompts.prompt_preview``) as Markdown a person
reads at a glance: per sub-prompt, which text runs for which steps with its token count and
emphasis; the LoRAs and other ``<…>`` networks found; the embeddings; the notes; and the same
schedule for the negative prompt. The JSON form stays the API's (``/prompt_preview``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from modules.processing.prompts.prompt_encoding import CHUNK_TOKENS

__all__ = ["plan_markdown"]

# CommonMark lets any ASCII punctuation be backslash-escaped; prompts are full of it ((), [], :, |).
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:&\"'=])")


def _text(value: str) -> str:
    """Prompt text as literal Markdown, one line; an empty step reads "(empty)"."""
    flat = " ".join(value.split())
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", flat) if flat else "*(empty)*"


def _number(value: float) -> str:
    return f"{value:g}"


def _emphasis(fragments: Sequence[Sequence[Any]]) -> str:
    """The fragments whose weight is not 1 ("snow ×1.3"), and BREAKs; "–" when there are none."""
    parts = []
    for text, weight in fragments:
        if weight == -1:  # how the parser marks BREAK
            parts.append("BREAK")
        elif weight != 1:
            parts.append(f"{_text(text)} ×{_number(weight)}")
    return ", ".join(parts) or "–"


def _schedule_table(schedule: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = ["| Steps | Text | Tokens | Emphasis |", "|---|---|---|---|"]
    start = 1
    for entry in schedule:
        end = entry["until_step"]
        steps = f"{start}" if start == end else f"{start}–{end}"
        tokens = f"{entry['tokens']}/{entry['chunks'] * CHUNK_TOKENS}"
        rows.append(f"| {steps} | {_text(entry['text'])} | {tokens} | {_emphasis(entry['fragments'])} |")
        start = end + 1
    return rows


def _prompt_section(title: str, plan: Mapping[str, Any]) -> list[str]:
    """One prompt's sub-prompts (A1111's AND), each a table of its schedule."""
    sub_prompts = plan["sub_prompts"]
    lines = [f"### {title}"]
    for number, sub_prompt in enumerate(sub_prompts, start=1):
        if len(sub_prompts) > 1:
            lines += ["", f"**Sub-prompt {number}** (AND, weight {_number(sub_prompt['weight'])})"]
        lines += ["", *_schedule_table(sub_prompt["schedule"])]
    return lines


def _networks_section(networks: Sequence[Mapping[str, Any]]) -> list[str]:
    if not networks:
        return ["**Extra networks:** none"]
    rows = ["**Extra networks**", "", "| Kind | Name | Text encoder | UNet | Found |", "|---|---|---|---|---|"]
    for net in networks:
        weights = [_number(net[key]) if key in net else "–" for key in ("te", "unet")]
        found = "–" if "found" not in net else ("yes" if net["found"] else "**no**")
        rows.append(f"| {_text(net['kind'])} | {_text(net['name'])} | {weights[0]} | {weights[1]} | {found} |")
    return rows


def plan_markdown(plan: Mapping[str, Any], negative: Mapping[str, Any] | None = None) -> str:
    """The prompt's plan (and the negative prompt's, when given) as Markdown tables."""
    lines = [*_prompt_section("Prompt", plan), "", *_networks_section(plan["extra_networks"])]
    if plan["embeddings"]:
        used = (f"{_text(e['name'])} ({e['vectors']} token{'s' if e['vectors'] != 1 else ''})"
                for e in plan["embeddings"])
        lines += ["", "**Embeddings:** " + ", ".join(used)]
    notes = [*plan["notes"], *(negative["notes"] if negative else [])]
    if notes:
        lines += ["", "**Notes**", "", *(f"- {_text(note)}" for note in notes)]
    if negative is not None:
        lines += ["", *_prompt_section("Negative prompt", negative)]
    return "\n".join(lines)
