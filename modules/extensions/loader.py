"""Finding and importing scripts: ``scripts/*.py`` and ``extensions/<name>/scripts/*.py``.

An extension is a folder with an ``extension.json``::

    {"name": "cfg-rescale", "version": "1.0", "description": "...", "requires": [],
     "after": ["other-extension"], "before": []}

A script file that fails to import (a syntax error, a missing package, an exception at
import time) is reported with its file and skipped; the others load. An import slower than
``SLOW_IMPORT_S`` is reported; one still running after ``IMPORT_TIMEOUT_S`` (a file that waits
on the network, or loops) is reported and skipped, and start-up goes on without it.
``--disable-extensions extra`` skips ``extensions/``,
``all`` also skips ``scripts/``: the way back when an extension breaks start-up.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import importlib.util
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from modules.extensions.api import _REGISTRATION, Script, ScriptResources

__all__ = ["DISABLE_CHOICES", "Callback", "ExtensionInfo", "ScriptCatalog", "ScriptSource", "discover_scripts"]

logger = logging.getLogger(__name__)

DISABLE_CHOICES = ("none", "extra", "all")
SLOW_IMPORT_S = 2.0
IMPORT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ExtensionInfo:
    """An ``extensions/<folder>``: its manifest, whether it loaded, and why not."""

    name: str
    path: Path
    version: str = ""
    description: str = ""
    requires: tuple[str, ...] = ()
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    enabled: bool = True
    error: str | None = None


@dataclass(frozen=True)
class ScriptSource:
    """A ``Script`` class and where it came from (``extension`` None for ``scripts/``)."""

    script_class: type[Script]
    path: Path
    extension: str | None = None


@dataclass(frozen=True)
class Callback:
    """A function a script file registered for an app-level event, and the file it came from."""

    name: str
    function: Callable[..., Any]
    path: Path


@dataclass
class ScriptCatalog:
    """Everything discovery found, in hook order: built-in scripts first, then extensions."""

    scripts: list[ScriptSource] = field(default_factory=list)
    extensions: list[ExtensionInfo] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    callbacks: list[Callback] = field(default_factory=list)
    #: The model libraries every script instance gets as ``Script.resources``.
    resources: ScriptResources = field(default_factory=ScriptResources)

    def run_callbacks(self, name: str, *args: Any) -> list[Any]:
        """Call every callback registered for ``name``, in load order; returns their results.

        A callback that raises is logged with its file and left out; the others still run.
        """
        results = []
        for callback in (c for c in self.callbacks if c.name == name):
            try:
                results.append(callback.function(*args))
            except Exception:  # an extension must never take the app down
                logger.exception("callback %s from %s failed", name, callback.path)
        return results


def _read_manifest(folder: Path) -> ExtensionInfo:
    """The folder's ``extension.json``; a missing or broken one is reported, not fatal."""
    manifest = folder / "extension.json"
    try:
        data: Any = json.loads(manifest.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as error:
        return ExtensionInfo(folder.name, folder, enabled=False, error=f"{manifest.name}: {error}")

    def names(key: str) -> tuple[str, ...]:
        value = data.get(key, [])
        return tuple(str(v) for v in value) if isinstance(value, list) else ()

    return ExtensionInfo(str(data.get("name") or folder.name), folder, str(data.get("version", "")),
                         str(data.get("description", "")), names("requires"), names("before"), names("after"))


def _ordered(extensions: list[ExtensionInfo]) -> list[ExtensionInfo]:
    """Extensions in an order that honours their ``before``/``after`` lists (name order otherwise).

    A cycle cannot be honoured: the extensions in it keep name order and a warning is logged.
    """
    pending = sorted(extensions, key=lambda e: e.name)
    known = {e.name for e in pending}
    must_follow = {e.name: {n for n in e.after if n in known} for e in pending}
    for extension in pending:
        for later in extension.before:
            if later in must_follow:
                must_follow[later].add(extension.name)
    ordered: list[ExtensionInfo] = []
    while pending:
        placed = {e.name for e in ordered}
        ready = next((e for e in pending if must_follow[e.name] <= placed), None)
        if ready is None:
            logger.warning("extension order has a cycle among %s; using name order", [e.name for e in pending])
            ready = pending[0]
        ordered.append(ready)
        pending.remove(ready)
    return ordered


def _execute_module(path: Path, module_name: str) -> tuple[ModuleType, list[Callback]]:
    """Run one script file as a module; returns it and the callbacks it registered."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError("not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look classes up here
    registered: list[Callback] = []
    token = _REGISTRATION.set(lambda name, function: registered.append(Callback(name, function, path)))
    try:
        spec.loader.exec_module(module)
    finally:
        _REGISTRATION.reset(token)
    return module, registered


def _execute_with_timeout(path: Path, module_name: str, timeout_s: float) -> tuple[ModuleType, list[Callback]]:
    """``_execute_module`` on a daemon thread; TimeoutError when it has not finished in time.

    Python cannot stop an import half way, so a file that overruns keeps running in the
    background; nothing it defines or registers is used.
    """
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = _execute_module(path, module_name)
        except BaseException as error:  # handed back to the caller's thread below
            outcome["error"] = error

    worker = threading.Thread(target=contextvars.copy_context().run, args=(work,),
                              name=f"import {path.name}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise TimeoutError(f"importing did not finish in {timeout_s:g} s; skipped")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _import_scripts(path: Path, extension: str | None, catalog: ScriptCatalog,
                    timeout_s: float = IMPORT_TIMEOUT_S) -> None:
    """Import one script file and add its ``Script`` subclasses; failures go to ``catalog.errors``."""
    # A unique module name per file, so two extensions' "scripts/main.py" do not collide.
    module_name = "aigen_script_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    started = time.monotonic()
    try:
        module, registered = _execute_with_timeout(path, module_name, timeout_s)
    except (Exception, SystemExit) as error:  # anything a user file raises must not stop start-up
        sys.modules.pop(module_name, None)
        catalog.errors.append(f"{path}: {type(error).__name__}: {error}")
        logger.warning("script %s not loaded: %s", path, error)
        return
    catalog.callbacks.extend(registered)  # only from files that loaded completely
    elapsed = time.monotonic() - started
    if elapsed > SLOW_IMPORT_S:
        catalog.errors.append(f"{path}: importing took {elapsed:.1f} s (slows every start)")
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, Script) and value is not Script \
                and value.__module__ == module_name:
            catalog.scripts.append(ScriptSource(value, path, extension))


def _script_files(folder: Path) -> list[Path]:
    """The ``*.py`` files of a folder, without ``_private.py`` ones (``__init__.py``, helpers)."""
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_")) if folder.is_dir() else []


def discover_scripts(scripts_dir: Path, extensions_dir: Path | Sequence[Path], disable: str = "none",
                     disabled_extensions: frozenset[str] = frozenset(), builtin_dir: Path | None = None,
                     import_timeout_s: float = IMPORT_TIMEOUT_S) -> ScriptCatalog:
    """Import every script; ``disable`` is "none", "extra" (skip extensions) or "all" (skip the
    user's ``scripts_dir`` too). ``builtin_dir`` holds the scripts that ship with the studio;
    they always load, first. A file whose import runs past ``import_timeout_s`` is skipped.

    ``extensions_dir`` may be several folders (the shipped one and the data dir's); each
    extension folder is read once. ``disabled_extensions`` (names the user switched off in
    the Extensions tab) are listed but not imported.
    """
    if disable not in DISABLE_CHOICES:
        raise ValueError(f"--disable-extensions must be one of {', '.join(DISABLE_CHOICES)}, got {disable!r}")
    catalog = ScriptCatalog()
    folders_of_scripts = [builtin_dir] if builtin_dir is not None else []
    if disable != "all" and (builtin_dir is None or scripts_dir.resolve() != builtin_dir.resolve()):
        folders_of_scripts.append(scripts_dir)
    for folder in folders_of_scripts:
        for path in _script_files(folder):
            _import_scripts(path, None, catalog, import_timeout_s)
    roots = [extensions_dir] if isinstance(extensions_dir, Path) else list(extensions_dir)
    unique_roots = list({root.resolve(): root for root in roots if root.is_dir()}.values())
    folders = sorted((p for root in unique_roots for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.name)
    for info in _ordered([_read_manifest(folder) for folder in folders]):
        if info.error is None and (disable != "none" or info.name in disabled_extensions):
            info = dataclasses.replace(info, enabled=False)
        catalog.extensions.append(info)
        if info.error is not None:
            catalog.errors.append(f"{info.path}: {info.error}")
        elif info.enabled:
            for path in _script_files(info.path / "scripts"):
                _import_scripts(path, info.name, catalog, import_timeout_s)
    return catalog
