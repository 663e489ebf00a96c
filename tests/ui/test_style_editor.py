"""The ✏️ styles editor and 📋/💾, called as plain functions over a real styles.csv."""

from __future__ import annotations

from pathlib import Path

import pytest

from modules.processing.prompts.styles import PromptStyle, StyleStore
from modules.ui.style_editor import (
    apply_selected_styles,
    close_editor,
    delete_edited_style,
    open_editor,
    save_edited_style,
    save_prompts_as_style,
    select_style,
)


@pytest.fixture
def store(tmp_path: Path) -> StyleStore:
    store = StyleStore(tmp_path / "styles.csv")
    store.save(PromptStyle("Art", "oil painting, {prompt}", "blurry"))
    store.save(PromptStyle("HD", "8k"))
    return store


def test_opening_prefills_the_first_selected_style(store: StyleStore) -> None:
    panel, name, prompt, negative, status = open_editor(store, ["HD", "Art"])
    assert panel["visible"] is True
    assert name["choices"] == ["Art", "HD"] and name["value"] == "HD"
    assert (prompt, negative, status) == ("8k", "", "")
    _, blank, prompt, negative, _ = open_editor(store, [])
    assert blank["value"] is None and (prompt, negative) == ("", "")
    assert close_editor()["visible"] is False


def test_picking_a_name_loads_that_style_and_a_new_name_keeps_the_typed_text(store: StyleStore) -> None:
    assert select_style(store, "Art") == ("oil painting, {prompt}", "blurry")
    kept_prompt, kept_negative = select_style(store, "Brand new")
    assert kept_prompt == {"__type__": "update"} and kept_negative == {"__type__": "update"}


def test_save_writes_styles_csv_and_refreshes_both_dropdowns(store: StyleStore) -> None:
    tab, name, status = save_edited_style(store, "  Neon ", "{prompt}, neon lights", "dull", ["HD"])
    assert store.load()["Neon"] == PromptStyle("Neon", "{prompt}, neon lights", "dull")
    assert tab["choices"] == ["Art", "HD", "Neon"] and tab["value"] == ["HD"]
    assert name["value"] == "Neon" and "Saved style" in status
    assert store.apply(["Neon"], "a city", "") == ("a city, neon lights", "dull")
    save_edited_style(store, "Art", "watercolor", "", [])  # replacing keeps the file order
    assert list(store.load()) == ["Art", "HD", "Neon"] and store.load()["Art"].prompt == "watercolor"


def test_an_empty_name_is_a_warning_not_a_crash(store: StyleStore) -> None:
    before = store.path.read_bytes()
    with pytest.warns(UserWarning, match="needs a name"):
        tab, name, status = save_edited_style(store, "   ", "x", "y", [])
    assert tab == name == {"__type__": "update"} and "needs a name" in status
    assert store.path.read_bytes() == before


def test_delete_removes_the_style_and_unselects_it(store: StyleStore) -> None:
    tab, name, prompt, negative, status = delete_edited_style(store, "Art", ["Art", "HD"])
    assert list(store.load()) == ["HD"]
    assert tab["choices"] == ["HD"] and tab["value"] == ["HD"] and name["value"] is None
    assert (prompt, negative) == ("", "") and "Deleted style" in status


def test_deleting_a_missing_style_or_no_name_warns_and_keeps_the_file(store: StyleStore) -> None:
    before = store.path.read_bytes()
    with pytest.warns(UserWarning, match="no style named"):
        *updates, status = delete_edited_style(store, "<b>Ghost</b>", ["HD"])
    assert all(update == {"__type__": "update"} for update in updates)
    assert "&lt;b&gt;Ghost" in status and "<b>" not in status  # user text is escaped in the page
    with pytest.warns(UserWarning, match="Pick the style"):
        delete_edited_style(store, None, [])
    assert store.path.read_bytes() == before


def test_apply_and_save_from_the_prompt_boxes(store: StyleStore) -> None:
    assert apply_selected_styles(store, ["Art", "HD"], "a cat", "ugly") == (
        "oil painting, a cat, 8k", "ugly, blurry", [])
    with pytest.warns(UserWarning, match="Gone"):
        prompt, _, styles = apply_selected_styles(store, ["Gone"], "a cat", "")
    assert prompt == {"__type__": "update"} and styles["choices"] == ["Art", "HD"]
    tab, _ = save_prompts_as_style(store, "Mine", "my prompt", "my negative", ["HD"])
    assert store.load()["Mine"] == PromptStyle("Mine", "my prompt", "my negative") and "Mine" in tab["choices"]
