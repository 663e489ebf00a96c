"""Layering and size rules for ``modules/``, read from the source with ``ast`` (nothing is imported).

Imports point down only (DESIGN.md "Layers"): ``ui -> processing -> models``; no gradio below
the UI; no ``shared`` module and no ``global`` rebinding of module state; files at most 800
lines and functions at most 100 (style guide B5). Lazy imports inside functions count too.
Every rule reports all of its offenders at once.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

MODULES_DIR = Path(__file__).resolve().parents[1] / "modules"
MAX_FILE_LINES = 800
MAX_FUNCTION_LINES = 100
#: "<path relative to modules/>:<function>" -> why it may be longer than MAX_FUNCTION_LINES.
LONG_FUNCTION_ALLOWED: dict[str, str] = {}
#: "<path relative to modules/>" -> why it may be longer than MAX_FILE_LINES.
LONG_FILE_ALLOWED: dict[str, str] = {}

# (package whose files are checked, imported module prefix that is forbidden there, reason)
FORBIDDEN_IMPORTS: tuple[tuple[str, str, str], ...] = (
    ("modules.processing", "gradio", "processing must run headless"),
    ("modules.models", "gradio", "models must run headless"),
    ("modules.models", "modules.processing", "models sit below processing"),
    ("modules.models", "modules.ui", "models sit below the UI"),
    ("modules.models", "modules.api", "models sit below the REST API"),
    ("modules.processing", "modules.ui", "processing sits below the UI"),
    ("modules.processing", "modules.api", "processing sits below the REST API"),
    ("modules.families", "gradio", "model families must run headless"),
    ("modules.families", "modules.processing", "families sit below processing"),
    ("modules.families", "modules.ui", "families sit below the UI"),
    ("modules.families", "modules.api", "families sit below the REST API"),
)


@dataclass(frozen=True)
class SourceFile:
    """One parsed file under ``modules/``."""

    path: Path
    root: Path  # the folder holding modules/
    module: str  # dotted name, e.g. "modules.processing.generation.txt2img"
    is_package: bool  # an __init__.py
    tree: ast.Module
    line_count: int

    @property
    def relative(self) -> str:
        """The path from the repository root, for messages: "modules/processing/generation/txt2img.py"."""
        return self.path.relative_to(self.root).as_posix()

    @property
    def key(self) -> str:
        """The path below modules/, as the allow-lists spell it: "processing/txt2img.py"."""
        return self.path.relative_to(self.root / "modules").as_posix()


def parse_source(path: Path, root: Path = MODULES_DIR.parent) -> SourceFile:
    """Parse ``path``; its dotted module name is taken relative to ``root``."""
    text = path.read_text(encoding="utf-8")
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    tree = ast.parse(text, filename=str(path))
    return SourceFile(path, root, ".".join(parts), is_package, tree, len(text.splitlines()))


def _resolve_relative(source: SourceFile, level: int, module: str | None) -> str:
    package = source.module.split(".") if source.is_package else source.module.split(".")[:-1]
    base = package[: len(package) - (level - 1)] if level > 1 else package
    return ".".join([*base, module] if module else base)


def _string_import(node: ast.Call) -> str | None:
    """``importlib.import_module("x")`` / ``__import__("x")`` with a literal name."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name in ("import_module", "__import__") and node.args:
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def imported_modules(source: SourceFile) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything a file imports, at any depth.

    ``from a import b`` yields both ``a`` and ``a.b`` (``b`` may be a submodule).
    """
    for node in ast.walk(source.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_relative(source, node.level, node.module) if node.level else node.module or ""
            yield node.lineno, base
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{base}.{alias.name}"
        elif isinstance(node, ast.Call):
            name = _string_import(node)
            if name:
                yield node.lineno, name


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def import_violations(sources: list[SourceFile]) -> list[str]:
    """Every forbidden import edge, one line each."""
    found: set[str] = set()
    for source in sources:
        for line, name in imported_modules(source):
            for package, banned, reason in FORBIDDEN_IMPORTS:
                if _within(source.module, package) and _within(name, banned):
                    found.add(f"{source.relative}:{line} imports {name} ({reason})")
    return sorted(found)


def global_state_violations(sources: list[SourceFile]) -> list[str]:
    """``global`` statements (rebinding module state) and any module named ``shared``."""
    found = []
    for source in sources:
        if source.path.name == "shared.py" or (source.is_package and source.path.parent.name == "shared"):
            found.append(f"{source.relative}: a 'shared' module (pass AppContext down instead)")
        for node in ast.walk(source.tree):
            if isinstance(node, ast.Global):
                found.append(f"{source.relative}:{node.lineno} global {', '.join(node.names)}")
    return found


def size_violations(sources: list[SourceFile]) -> list[str]:
    """Files over MAX_FILE_LINES lines and functions over MAX_FUNCTION_LINES lines."""
    found = []
    for source in sources:
        if source.line_count > MAX_FILE_LINES and source.key not in LONG_FILE_ALLOWED:
            found.append(f"{source.relative}: {source.line_count} lines (max {MAX_FILE_LINES})")
        for node in ast.walk(source.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES and f"{source.key}:{node.name}" not in LONG_FUNCTION_ALLOWED:
                    found.append(f"{source.relative}:{node.lineno} {node.name}() is {length} lines "
                                 f"(max {MAX_FUNCTION_LINES})")
    return found


@pytest.fixture(scope="module")
def sources() -> list[SourceFile]:
    paths = sorted(p for p in MODULES_DIR.rglob("*.py") if "__pycache__" not in p.parts)
    assert paths, f"no Python files under {MODULES_DIR}"
    return [parse_source(p) for p in paths]


def _report(title: str, offenders: list[str]) -> str:
    return f"{len(offenders)} {title}:\n  " + "\n  ".join(offenders)


def test_imports_point_down_only(sources: list[SourceFile]) -> None:
    offenders = import_violations(sources)
    assert not offenders, _report("upward or gradio imports", offenders)


def test_no_shared_module_and_no_global_statements(sources: list[SourceFile]) -> None:
    offenders = global_state_violations(sources)
    assert not offenders, _report("kinds of process-wide mutable state", offenders)


def test_files_and_functions_stay_small(sources: list[SourceFile]) -> None:
    offenders = size_violations(sources)
    assert not offenders, _report("files or functions over the size caps", offenders)


def test_allow_lists_name_existing_code(sources: list[SourceFile]) -> None:
    files = {s.key for s in sources}
    functions = {
        f"{s.key}:{node.name}"
        for s in sources for node in ast.walk(s.tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    stale = sorted((set(LONG_FILE_ALLOWED) - files) | (set(LONG_FUNCTION_ALLOWED) - functions))
    assert not stale, f"allow-list entries for code that no longer exists: {stale}"


# The checker itself, on synthetic packages: a rule that never fires protects nothing.


def _fake_tree(root: Path, files: dict[str, str]) -> list[SourceFile]:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return [parse_source(root / name, root) for name in files]


def test_checker_finds_every_kind_of_upward_import(tmp_path: Path) -> None:
    sources = _fake_tree(tmp_path, {
        "modules/__init__.py": "",
        "modules/models/__init__.py": "",
        "modules/models/a.py": "from ..processing import txt2img\nimport gradio as gr\n",
        "modules/models/b.py": "def f():\n    from modules.ui.txt2img import tab\n",
        "modules/models/c.py": "from modules import api\n",
        "modules/processing/__init__.py": "from gradio.components import Image\n",
        "modules/processing/d.py": "import importlib\nimportlib.import_module('modules.ui.x')\n",
        "modules/processing/e.py": "from . import samplers\nfrom modules.models import loader\n",
        "modules/ui/f.py": "import gradio\nfrom modules.processing import txt2img\n",
    })
    offenders = "\n".join(import_violations(sources))
    for expected in ("a.py:1 imports modules.processing", "a.py:2 imports gradio", "b.py:2 imports modules.ui",
                     "c.py:1 imports modules.api", "processing/__init__.py:1 imports gradio",
                     "d.py:2 imports modules.ui.x"):
        assert expected in offenders
    assert "e.py" not in offenders and "f.py" not in offenders


def test_checker_finds_global_state_and_oversized_code(tmp_path: Path) -> None:
    long_body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    sources = _fake_tree(tmp_path, {
        "modules/shared.py": "opts = None\n",
        "modules/state.py": "count = 0\ndef bump():\n    global count\n    count += 1\n",
        "modules/big.py": f"def long():\n{long_body}\n" + "\n" * MAX_FILE_LINES,
        "modules/ok.py": f"def fits():\n{long_body[: long_body.rindex(chr(10))]}\n",
    })
    state = "\n".join(global_state_violations(sources))
    assert "shared.py" in state and "state.py:3 global count" in state
    sizes = "\n".join(size_violations(sources))
    assert f"long() is {MAX_FUNCTION_LINES + 1} lines" in sizes and "big.py:" in sizes
    assert "fits" not in sizes and "ok.py" not in sizes
