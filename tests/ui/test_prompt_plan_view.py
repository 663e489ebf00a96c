"""🔍's prompt plan as tables: the schedule per step range, tokens, emphasis, networks, notes and
the negative prompt, with prompt punctuation shown literally (not as Markdown or JSON)."""

from __future__ import annotations

from modules.models.loader import build_clip_tokenizer
from modules.processing.prompts.prompt_preview import preview_prompt
from modules.ui.prompt_plan_view import plan_markdown

TOKENIZER = build_clip_tokenizer()
PROMPT = "a [red:blue:0.5] cat :1.2 AND (snow:1.3) BREAK sky <lora:film:0.8>"


def _plan(prompt: str, steps: int = 20) -> dict:
    return preview_prompt(TOKENIZER, prompt, steps)


def test_the_schedule_reads_as_step_ranges_with_token_counts() -> None:
    text = plan_markdown(_plan(PROMPT), _plan("blurry, [ugly::5]"))
    assert "| Steps | Text | Tokens | Emphasis |" in text
    assert "| 1–10 | a red cat | 3/75 | – |" in text and "| 11–20 | a blue cat | 3/75 | – |" in text
    assert "**Sub-prompt 1** (AND, weight 1.2)" in text and "**Sub-prompt 2**" in text
    assert "2/150 | snow ×1.3, BREAK |" in text  # BREAK starts a second 75-token chunk
    negative = text.split("### Negative prompt", 1)[1]
    assert "| 1–5 | blurry, ugly |" in negative.replace("\\", "") and "| 6–20 | blurry," in negative


def test_networks_and_notes_are_listed() -> None:
    text = plan_markdown(_plan(PROMPT))
    assert "| lora | film | 0.8 | 0.8 | **no** |" in text
    assert "LoRA not found" in text
    assert "### Negative prompt" not in text  # only when one is given
    assert "**Extra networks:** none" in plan_markdown(_plan("a cat"))


def test_prompt_punctuation_is_literal_and_nothing_is_json() -> None:
    text = plan_markdown(_plan("a | b *c* (d:1.1) {e}"), _plan(""))
    assert "{" not in text.replace("\\{", "") and '"sub_prompts"' not in text
    row = next(line for line in text.splitlines() if line.startswith("| 1–20 |"))
    assert row.count(" | ") == 3  # the prompt's own | is escaped, so the table keeps 4 columns
    assert "\\*c\\*" in row and "*(empty)*" in text  # an empty negative prompt says so
    assert "d ×1.1" in row


def test_a_single_step_range_is_one_number() -> None:
    text = plan_markdown(_plan("[a:b:1]", steps=3))
    assert "| 1 | a |" in text and "| 2–3 | b |" in text
