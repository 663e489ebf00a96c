"""A1111's prompt language: golden parses for every row of the syntax table, and safety on
hostile input (property tests)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modules.processing.prompts.prompt_syntax import (
    Fragment,
    parse_emphasis,
    prompt_schedule,
    split_and,
    strip_comments,
)


def _pairs(text: str) -> list[tuple[str, float]]:
    return [(f.text, f.weight) for f in parse_emphasis(text)]


@pytest.mark.parametrize(("text", "expected"), [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("a [dull] word", [("a ", 1.0), ("dull", 0.909091), (" word", 1.0)]),
    ("((nested))", [("nested", 1.21)]),
    ("[[twice]]", [("twice", 0.826446)]),
    ("(word:1.5)", [("word", 1.5)]),
    ("( a : 1.2 )", [(" a ", 1.2)]),  # spaces allowed around the weight (A1111 1.5+)
    ("((house:1.3))", [("house", 1.43)]),  # an explicit weight inside (x) multiplies
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),  # equal neighbours merge
    (r"\(literal\]", [("(literal]", 1.0)]),
    (r"a \\ b", [("a \\ b", 1.0)]),
    ("[a (b] c)", [("a ", 0.909091), ("b", 1.0), (" c", 1.1)]),  # round and square match separately
    ("", [("", 1.0)]),
])
def test_emphasis_weights_match_a1111(text: str, expected: list[tuple[str, float]]) -> None:
    assert _pairs(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("(unbalanced", [("(unbalanced", 1.0)]),
    ("unbalanced)", [("unbalanced)", 1.0)]),
    ("a [b", [("a [b", 1.0)]),
    ("x :1.5)", [("x :1.5)", 1.0)]),
    ("a (((house:1.3)) b", [("a (", 1.0), ("house", 1.43), (" b", 1.0)]),
])
def test_unbalanced_brackets_are_literal_text(text: str, expected: list[tuple[str, float]]) -> None:
    assert _pairs(text) == expected


def test_break_separates_chunks() -> None:
    fragments = parse_emphasis("a cat BREAK (a hat)")
    assert fragments == [Fragment("a cat"), Fragment("BREAK", -1.0, is_break=True), Fragment("a hat", 1.1)]
    assert _pairs("BREAKFAST") == [("BREAKFAST", 1.0)]  # only the whole word


def test_a1111_documented_schedule() -> None:
    prompt = ("fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75]"
              "[ in foreground::0.6][: in background:0.25] [shoddy:masterful:0.5]")
    assert prompt_schedule(prompt, 100) == [
        (25, "fantasy landscape with a mountain and an oak in foreground shoddy"),
        (50, "fantasy landscape with a lake and an oak in foreground in background shoddy"),
        (60, "fantasy landscape with a lake and an oak in foreground in background masterful"),
        (75, "fantasy landscape with a lake and an oak in background masterful"),
        (100, "fantasy landscape with a lake and a christmas tree in background masterful"),
    ]


@pytest.mark.parametrize(("prompt", "steps", "expected"), [
    ("a [red:blue:0.5] ball", 20, [(10, "a red ball"), (20, "a blue ball")]),
    ("a [red:blue:7] ball", 20, [(7, "a red ball"), (20, "a blue ball")]),
    ("a [b:.5] c", 10, [(5, "a  c"), (10, "a b c")]),  # [to:when]: added from the step on
    ("a [b::3] c", 10, [(3, "a b c"), (10, "a  c")]),  # [from::when]: removed after it
    ("a [b:1.5] c", 10, [(1, "a  c"), (10, "a b c")]),  # a step number, cut to an int
    ("[(a:2):3]", 10, [(3, ""), (10, "(a:2)")]),  # emphasis inside survives as text
    ("[a:b:99]", 10, [(10, "a")]),  # past the last step: never switches
    ("[fe|]male", 4, [(1, "female"), (2, "male"), (3, "female"), (4, "male")]),
    ("[a|b|c]", 3, [(1, "a"), (2, "b"), (3, "c")]),
    ("[a:[b|c]:2]", 4, [(2, "a"), (3, "b"), (4, "c")]),  # nesting: alternation counts from step 1
    ("a (b:1.2) [c] plain", 20, [(20, "a (b:1.2) [c] plain")]),
    ("[a:b:x]", 5, [(5, "[a:b:x]")]),  # not a number: an emphasis group, kept as text
])
def test_prompt_editing_and_alternation(prompt: str, steps: int, expected: list[tuple[int, str]]) -> None:
    assert prompt_schedule(prompt, steps) == expected


def test_and_splits_with_weights() -> None:
    assert split_and("a cat :1.2 AND a dog AND snow:0.5") == [("a cat", 1.2), (" a dog ", 1.0), (" snow", 0.5)]
    assert split_and("SAND castle") == [("SAND castle", 1.0)]


def test_comments_are_stripped_per_line() -> None:
    assert strip_comments("a cat # fluffy\n(red hat) # wool") == "a cat \n(red hat)"
    assert strip_comments("no comment") == "no comment"


@pytest.mark.timeout(60)
def test_deep_nesting_and_huge_prompts_finish() -> None:
    deep = "(" * 20_000 + "x" + ")" * 20_000
    fragments = parse_emphasis(deep)
    assert "".join(f.text for f in fragments).count("x") == 1
    assert max(f.weight for f in fragments) > 1.0
    schedule = prompt_schedule("[" * 5_000 + "a:b:3" + "]" * 5_000, 10)
    assert schedule[-1][0] == 10
    long_prompt = ", ".join(f"(word{i}:1.1) [x|y] [a:b:{i % 20}]" for i in range(2_000))  # ~20k tokens
    assert len(prompt_schedule(long_prompt, 20)) == 20
    assert len(parse_emphasis(long_prompt)) > 1000


_ALPHABET = st.sampled_from(list("()[]:|\\ ab1.5") + [" AND ", " BREAK ", ":0.5", "#"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_ALPHABET, max_size=80).map("".join), st.integers(min_value=1, max_value=40))
def test_any_input_parses_without_error(text: str, steps: int) -> None:
    for sub_prompt, weight in split_and(strip_comments(text)):
        assert isinstance(weight, float)
        schedule = prompt_schedule(sub_prompt, steps)
        assert schedule and schedule[-1][0] == steps
        assert [end for end, _ in schedule] == sorted({end for end, _ in schedule})
        for _, step_text in schedule:
            fragments = parse_emphasis(step_text)
            assert fragments and all(f.weight > 0 or f.is_break for f in fragments)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="()[]:|\\#"), max_size=60))
def test_plain_text_passes_through_unchanged(text: str) -> None:
    assert prompt_schedule(text, 10) == [(10, text)]
    if "BREAK" not in text and text:
        assert _pairs(text) == [(text, 1.0)]
