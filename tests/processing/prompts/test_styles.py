"""styles.csv: A1111's format and merge rule, saved atomically."""

from __future__ import annotations

from pathlib import Path

import pytest

from modules.processing.errors import RequestValidationError
from modules.processing.prompts.styles import PromptStyle, StyleStore, apply_payload_styles, apply_style_text


def test_merge_rule_uses_the_placeholder_or_appends() -> None:
    assert apply_style_text("masterpiece, {prompt}, 8k", "a cat") == "masterpiece, a cat, 8k"
    assert apply_style_text("oil painting", "a cat") == "a cat, oil painting"
    assert apply_style_text("oil painting", "") == "oil painting"
    assert apply_style_text("", "a cat") == "a cat"


def test_reads_a1111_styles_csv_and_applies_in_order(tmp_path: Path) -> None:
    path = tmp_path / "styles.csv"
    path.write_text('name,prompt,negative_prompt\nArt,"oil painting, {prompt}",blurry\nHD,8k,\n,orphan,\n',
                    encoding="utf-8")
    store = StyleStore(path)
    assert list(store.load()) == ["Art", "HD"]
    assert store.apply(["Art", "HD"], "a cat", "ugly") == ("oil painting, a cat, 8k", "ugly, blurry")
    with pytest.raises(RequestValidationError, match="Nope"):
        store.apply(["Nope"], "x", "")


def test_saving_adds_or_replaces_and_keeps_others(tmp_path: Path) -> None:
    store = StyleStore(tmp_path / "styles.csv")
    assert store.load() == {}
    store.save(PromptStyle("A", "one, two", 'say "hi"'))
    store.save(PromptStyle("B", "{prompt} in snow"))
    store.save(PromptStyle("A", "changed"))
    styles = store.load()
    assert list(styles) == ["A", "B"] and styles["A"].prompt == "changed" and styles["B"].prompt == "{prompt} in snow"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".styles-")]
    with pytest.raises(RequestValidationError):
        store.save(PromptStyle("  "))


def test_payload_styles_expand_and_are_validated(tmp_path: Path) -> None:
    store = StyleStore(tmp_path / "styles.csv")
    store.save(PromptStyle("Art", "oil painting", "blurry"))
    payload, notices = apply_payload_styles({"prompt": "a cat", "styles": ["Art"], "steps": 3}, store)
    assert payload == {"prompt": "a cat, oil painting", "negative_prompt": "blurry", "steps": 3}
    assert notices == []
    with pytest.raises(RequestValidationError, match="styles"):
        apply_payload_styles({"styles": "Art"}, store)


def test_an_unknown_style_is_left_out_with_a_notice(tmp_path: Path) -> None:
    # A1111 clients send style names of their own install; the job runs with the styles that exist.
    store = StyleStore(tmp_path / "styles.csv")
    store.save(PromptStyle("Art", "oil painting"))
    payload, notices = apply_payload_styles({"prompt": "a cat", "styles": ["Nope", "Art"]}, store)
    assert payload["prompt"] == "a cat, oil painting"
    assert len(notices) == 1 and "'Nope'" in notices[0] and "left out" in notices[0]


def test_delete_removes_only_that_style_and_keeps_the_a1111_format(tmp_path: Path) -> None:
    path = tmp_path / "styles.csv"
    store = StyleStore(path)
    for style in (PromptStyle("A", "a, {prompt}", "x"), PromptStyle("B", "b"), PromptStyle("C", "c", "z")):
        store.save(style)
    assert store.delete("B") == PromptStyle("B", "b")
    assert list(store.load()) == ["A", "C"]
    assert path.read_text(encoding="utf-8") == 'name,prompt,negative_prompt\nA,"a, {prompt}",x\nC,c,z\n'
    assert store.apply(["A"], "cat", "") == ("a, cat", "x")  # the placeholder still works after a rewrite
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".styles-")]


def test_deleting_a_missing_style_is_a_named_error_and_changes_nothing(tmp_path: Path) -> None:
    store = StyleStore(tmp_path / "styles.csv")
    with pytest.raises(RequestValidationError, match="Ghost"):
        store.delete("Ghost")
    assert not store.path.exists()
    store.save(PromptStyle("Real", "r"))
    before = store.path.read_bytes()
    with pytest.raises(RequestValidationError):
        store.delete("real")  # names are case-sensitive, as in A1111
    assert store.path.read_bytes() == before


def test_replacing_a_style_keeps_its_place_in_the_file(tmp_path: Path) -> None:
    store = StyleStore(tmp_path / "styles.csv")
    for name in ("A", "B", "C"):
        store.save(PromptStyle(name, name.lower()))
    store.save(PromptStyle("B", "new", "neg"))
    assert list(store.load()) == ["A", "B", "C"] and store.load()["B"] == PromptStyle("B", "new", "neg")
