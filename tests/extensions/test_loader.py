"""Script discovery: user files that break are reported and skipped, order follows manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modules.extensions.loader import discover_scripts

SCRIPT = '''
from modules.extensions.api import AlwaysVisible, Script, Slider


class {name}(Script):
    def title(self):
        return "{name}"

    def show(self, is_img2img):
        return AlwaysVisible

    def ui(self, is_img2img):
        return {{"amount": Slider("Amount", 0.0, 1.0, 0.5, step=0.1)}}
'''


def _extension(root: Path, folder: str, manifest: dict | str, scripts: dict[str, str]) -> Path:
    path = root / folder
    (path / "scripts").mkdir(parents=True)
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    (path / "extension.json").write_text(text)
    for name, source in scripts.items():
        (path / "scripts" / name).write_text(source)
    return path


def test_scripts_and_extensions_load_and_broken_ones_are_reported_not_fatal(tmp_path: Path) -> None:
    scripts, extensions = tmp_path / "scripts", tmp_path / "extensions"
    scripts.mkdir()
    (scripts / "good.py").write_text(SCRIPT.format(name="Good"))
    (scripts / "syntax.py").write_text("def broken(:\n")
    (scripts / "raises.py").write_text("raise RuntimeError('needs a GPU')\n")
    (scripts / "exits.py").write_text("import sys\nsys.exit(3)\n")
    (scripts / "helper.py").write_text("VALUE = 1\n")  # no Script: nothing to list
    _extension(extensions, "ext-a", {"name": "ext-a", "version": "1.2", "description": "A"},
               {"main.py": SCRIPT.format(name="FromA")})
    _extension(extensions, "ext-bad-json", "{not json", {"main.py": SCRIPT.format(name="Never")})

    catalog = discover_scripts(scripts, extensions)

    assert [s.script_class.__name__ for s in catalog.scripts] == ["Good", "FromA"]
    assert catalog.scripts[1].extension == "ext-a"
    assert [(e.name, e.version, e.enabled) for e in catalog.extensions] == [("ext-a", "1.2", True),
                                                                            ("ext-bad-json", "", False)]
    errors = "\n".join(catalog.errors)
    assert "exits.py: SystemExit" in errors and "syntax.py: SyntaxError" in errors
    assert "raises.py: RuntimeError: needs a GPU" in errors
    assert "ext-bad-json" in errors and "extension.json" in errors


def test_an_import_that_hangs_is_skipped_and_start_up_goes_on(tmp_path: Path) -> None:
    """A file that blocks at import (e.g. waiting for a model hub) must not hold start-up."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "hangs.py").write_text("import threading\nthreading.Event().wait(30)\n"
                                      + SCRIPT.format(name="Hangs"))
    (scripts / "good.py").write_text(SCRIPT.format(name="Good"))

    catalog = discover_scripts(scripts, tmp_path / "extensions", import_timeout_s=0.2)

    assert [s.script_class.__name__ for s in catalog.scripts] == ["Good"]
    assert any("hangs.py: TimeoutError: importing did not finish in 0.2 s; skipped" in e for e in catalog.errors)


def test_same_file_names_in_two_extensions_do_not_collide(tmp_path: Path) -> None:
    extensions = tmp_path / "extensions"
    _extension(extensions, "one", {"name": "one"}, {"main.py": SCRIPT.format(name="One")})
    _extension(extensions, "two", {"name": "two"}, {"main.py": SCRIPT.format(name="Two")})
    catalog = discover_scripts(tmp_path / "scripts", extensions)
    assert [s.script_class.__name__ for s in catalog.scripts] == ["One", "Two"]


def test_manifest_before_and_after_set_the_hook_order(tmp_path: Path) -> None:
    extensions = tmp_path / "extensions"
    _extension(extensions, "a", {"name": "a", "after": ["c"]}, {"s.py": SCRIPT.format(name="A")})
    _extension(extensions, "b", {"name": "b"}, {"s.py": SCRIPT.format(name="B")})
    _extension(extensions, "c", {"name": "c", "after": ["b"]}, {"s.py": SCRIPT.format(name="C")})
    _extension(extensions, "d", {"name": "d", "before": ["b"]}, {"s.py": SCRIPT.format(name="D")})
    catalog = discover_scripts(tmp_path / "scripts", extensions)
    assert [e.name for e in catalog.extensions] == ["d", "b", "c", "a"]
    assert [s.script_class.__name__ for s in catalog.scripts] == ["D", "B", "C", "A"]


@pytest.mark.parametrize(("disable", "expected"), [("none", ["Good", "FromA"]), ("extra", ["Good"]), ("all", [])])
def test_disable_extensions_is_the_way_back_from_a_broken_extension(tmp_path: Path, disable: str,
                                                                   expected: list[str]) -> None:
    scripts, extensions = tmp_path / "scripts", tmp_path / "extensions"
    scripts.mkdir()
    (scripts / "good.py").write_text(SCRIPT.format(name="Good"))
    _extension(extensions, "ext-a", {"name": "ext-a"}, {"main.py": SCRIPT.format(name="FromA")})
    catalog = discover_scripts(scripts, extensions, disable=disable)
    assert [s.script_class.__name__ for s in catalog.scripts] == expected
    assert [e.enabled for e in catalog.extensions] == [disable == "none"]


def test_a_switched_off_extension_is_listed_but_not_imported(tmp_path: Path) -> None:
    extensions = tmp_path / "extensions"
    _extension(extensions, "noisy", {"name": "noisy"}, {"main.py": "raise SystemExit('imported!')\n"})
    catalog = discover_scripts(tmp_path / "scripts", extensions, disabled_extensions=frozenset({"noisy"}))
    assert catalog.scripts == [] and catalog.errors == [] and not catalog.extensions[0].enabled
