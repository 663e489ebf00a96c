"""A1111's prompt language, parsed: comments, AND, prompt editing, alternation, emphasis, BREAK.

The three layers run in A1111's order:

1. :func:`split_and` cuts a prompt at ``AND`` into sub-prompts, each with an optional
   trailing ``:weight`` (Composable Diffusion, Liu et al. 2022).
2. :func:`prompt_schedule` resolves ``[from:to:when]``, ``[to:when]``, ``[from::when]`` and
   ``[a|b|c]`` into the text used from each step on (``when`` < 1 is a fraction of the
   steps, >= 1 a step number; alternation switches every step).
3. :func:`parse_emphasis` turns one step's text into weighted fragments: ``(x)`` x1.1,
   ``[x]`` /1.1, ``(x:1.3)`` x1.3, nesting multiplies, ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\``
   are literal, and ``BREAK`` starts a new 75-token chunk.

Hostile input is safe by construction: no recursion depends on the input (groups nested
deeper than ``MAX_DEPTH`` are literal text), and every pass is linear in the prompt length.
Unbalanced brackets are literal text. (A1111 instead weights everything after an unclosed
``(``; we keep the user's characters, as the product asks.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["MAX_DEPTH", "Fragment", "parse_emphasis", "prompt_schedule", "split_and", "strip_comments"]

MAX_DEPTH = 32
EMPHASIS = 1.1
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*$")
_AND = re.compile(r"\bAND\b")
_TRAILING_WEIGHT = re.compile(r"\s*:\s*([-+]?(?:\d+\.?\d*|\.\d+))\s*$")
_BREAK = re.compile(r"\s*\bBREAK\b\s*")
# A1111's re_attention tokens: escapes, brackets, ":weight)" closers, runs of plain text.
_ATTENTION = re.compile(r"\\[()\[\]\\]|\\|\(|\[|:\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\)|\)|]|[^\\()\[\]:]+|:")


@dataclass(frozen=True)
class Fragment:
    """A run of prompt text and its attention weight; ``is_break`` marks a BREAK."""

    text: str
    weight: float = 1.0
    is_break: bool = False


def strip_comments(prompt: str) -> str:
    """Drop ``#`` comments: from ``#`` to the end of its line (A1111 1.8's comments)."""
    if "#" not in prompt:
        return prompt
    return "\n".join(line.split("#", 1)[0] for line in prompt.split("\n")).strip()


def split_and(prompt: str) -> list[tuple[str, float]]:
    """``a :1.2 AND b`` -> ``[("a", 1.2), ("b", 1.0)]``: sub-prompts and their weights."""
    parts = []
    for part in _AND.split(prompt):
        match = _TRAILING_WEIGHT.search(part)
        weight = float(match.group(1)) if match else 1.0
        parts.append((part[: match.start()] if match else part, weight))
    return parts


# ---------------------------------------------------------------------------------- scheduling


@dataclass
class _Group:
    """An open bracket while parsing: its kind, and its parts split at ``:``/``|``."""

    opener: str
    parts: list[list[object]] = field(default_factory=lambda: [[]])
    separators: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Scheduled:
    before: list[object]
    after: list[object]
    when: float


@dataclass(frozen=True)
class _Alternate:
    options: list[list[object]]


@dataclass(frozen=True)
class _Wrapped:
    """Brackets kept as text (emphasis, or a square group that is no schedule) around parts."""

    opener: str
    closer: str
    parts: list[list[object]]
    separators: list[str]


def _literal(group: _Group) -> list[object]:
    """An unclosed group, back to its characters."""
    items: list[object] = [group.opener]
    for index, part in enumerate(group.parts):
        if index:
            items.append(group.separators[index - 1])
        items.extend(part)
    return items


def _close(group: _Group, closer: str) -> object:
    parts, separators = group.parts, group.separators
    if group.opener == "[" and separators and set(separators) == {"|"}:
        return _Alternate(parts)
    if group.opener == "[" and set(separators) == {":"} and len(parts) in (2, 3):
        number = "".join(x for x in parts[-1] if isinstance(x, str))
        only_text = all(isinstance(x, str) for x in parts[-1])
        if only_text and _NUMBER.match(number):
            before = parts[0] if len(parts) == 3 else []
            return _Scheduled(before, parts[-2], float(number))
    return _Wrapped(group.opener, closer, parts, separators)


def _tree(text: str) -> list[object]:
    """Parse brackets into nested nodes with an explicit stack (no recursion)."""
    root = _Group("")
    stack = [root]
    literal_depth = 0  # brackets nested beyond MAX_DEPTH stay text, with their closers
    index = 0
    while index < len(text):
        char = text[index]
        top = stack[-1]
        if char == "\\" and index + 1 < len(text):
            top.parts[-1].append(text[index:index + 2])
            index += 2
            continue
        if char in "([" and len(stack) > MAX_DEPTH:
            literal_depth += 1
            top.parts[-1].append(char)
        elif char in "([":
            stack.append(_Group(char))
        elif char in ")]" and literal_depth:
            literal_depth -= 1
            top.parts[-1].append(char)
        elif char in ")]" and len(stack) > 1 and top.opener == {")": "(", "]": "["}[char]:
            stack.pop()
            stack[-1].parts[-1].append(_close(top, char))
        elif char in ":|" and len(stack) > 1:
            top.separators.append(char)
            top.parts.append([])
        else:
            top.parts[-1].append(char)
        index += 1
    while len(stack) > 1:  # unclosed brackets are literal text
        group = stack.pop()
        stack[-1].parts[-1].extend(_literal(group))
    return _literal(root)[1:]


def _when_step(when: float, steps: int) -> int:
    """A1111: below 1 a fraction of the steps, else a step number; capped at ``steps``."""
    return min(steps, int(when * steps if when < 1 else when))


def _boundaries(nodes: list[object], steps: int) -> set[int]:
    """Steps at which the text changes (iteratively, over the whole tree)."""
    found, pending = {steps}, [nodes]
    while pending:
        for node in pending.pop():
            if isinstance(node, _Scheduled):
                found.add(_when_step(node.when, steps))
                pending += [node.before, node.after]
            elif isinstance(node, _Alternate):
                found.update(range(1, steps + 1))
                pending += node.options
            elif isinstance(node, _Wrapped):
                pending += node.parts
    return {step for step in found if step >= 1} or {steps}


def _text_at(nodes: list[object], step: int, steps: int) -> str:
    """The prompt text in force at ``step`` (1-based), flattened without recursion."""
    out: list[str] = []
    work: list[object] = list(reversed(nodes))
    while work:
        node = work.pop()
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Scheduled):
            work.extend(reversed(node.before if step <= _when_step(node.when, steps) else node.after))
        elif isinstance(node, _Alternate):
            work.extend(reversed(node.options[(step - 1) % len(node.options)]))
        elif isinstance(node, _Wrapped):
            pieces: list[object] = [node.opener]
            for index, part in enumerate(node.parts):
                if index:
                    pieces.append(node.separators[index - 1])
                pieces.extend(part)
            pieces.append(node.closer)
            work.extend(reversed(pieces))
    return "".join(out)


def prompt_schedule(prompt: str, steps: int) -> list[tuple[int, str]]:
    """The texts a prompt uses over ``steps`` steps: ``[(last_step, text), ...]``, ascending.

    Example: ``"a [red:blue:0.5] ball"`` over 20 steps -> ``[(10, "a red ball"), (20, "a blue ball")]``.
    Consecutive equal texts are merged.
    """
    nodes = _tree(prompt)
    schedule: list[tuple[int, str]] = []
    for step in sorted(_boundaries(nodes, steps)):
        text = _text_at(nodes, step, steps)
        if schedule and schedule[-1][1] == text:
            schedule[-1] = (step, text)
        else:
            schedule.append((step, text))
    return schedule


# ------------------------------------------------------------------------------------ emphasis


def _match_brackets(tokens: list[tuple[str, str | None]]) -> dict[int, float]:
    """Which opening tokens are closed, and their multipliers: ``{opener index: weight}``.

    Round and square brackets are matched on separate stacks, as A1111 does; ``(x:1.3)``
    gives its ``(`` the weight 1.3. Openers never closed are not in the result (literal).
    """
    multipliers: dict[int, float] = {}
    round_open: list[int] = []
    square_open: list[int] = []
    for index, (text, weight) in enumerate(tokens):
        if text == "(":
            round_open.append(index)
        elif text == "[":
            square_open.append(index)
        elif weight is not None and round_open:
            multipliers[round_open.pop()] = float(weight)
        elif text == ")" and round_open:
            multipliers[round_open.pop()] = EMPHASIS
        elif text == "]" and square_open:
            multipliers[square_open.pop()] = 1 / EMPHASIS
    return multipliers


def _weighted_runs(text: str) -> list[tuple[str, float]]:
    """Plain text with its weights (no BREAK handling), neighbours of equal weight merged."""
    tokens = [(match.group(0), match.group(1)) for match in _ATTENTION.finditer(text)]
    multipliers = _match_brackets(tokens)
    closers_of: dict[str, list[float]] = {"(": [], "[": []}
    weight, runs = 1.0, []
    for index, (token, number) in enumerate(tokens):
        if index in multipliers:  # a matched opener: weight until its closer
            closers_of[token].append(multipliers[index])
            weight *= multipliers[index]
            continue
        kind = "(" if token == ")" or number is not None else "[" if token == "]" else None
        if kind and closers_of[kind]:
            weight /= closers_of[kind].pop()
            continue
        literal = token[1:] if len(token) == 2 and token.startswith("\\") else token
        if runs and runs[-1][1] == weight:
            runs[-1] = (runs[-1][0] + literal, weight)
        else:
            runs.append((literal, weight))
    return runs


def parse_emphasis(text: str) -> list[Fragment]:
    """One step's prompt text as weighted fragments, with BREAK markers between chunks.

    Example: ``"a (red:1.3) [ball]"`` -> ``a `` 1.0, ``red`` 1.3, `` `` 1.0, ``ball`` 0.909.
    Returns ``[Fragment("", 1.0)]`` for an empty prompt.
    """
    fragments: list[Fragment] = []
    for index, part in enumerate(_BREAK.split(text)):
        if index:
            fragments.append(Fragment("BREAK", -1.0, is_break=True))
        fragments.extend(Fragment(run, round(weight, 6)) for run, weight in _weighted_runs(part) if run)
    return fragments or [Fragment("")]
