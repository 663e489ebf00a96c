"""Installing and switching extensions: folders and git, names checked, state remembered."""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import pytest

from modules.app import build_app_context
from modules.extensions.manager import (
    ExtensionInstallError,
    install_from_folder,
    install_from_git,
    read_disabled,
    write_disabled,
)
from modules.processing.errors import ProcessingError, RequestValidationError
from modules.settings import SettingsStore
from modules.studio import Studio
from tests.studio_fixtures import BASE

SCRIPT = '''from modules.extensions.api import AlwaysVisible, Checkbox, Script


class Marker(Script):
    def title(self):
        return "Marker"

    def show(self, is_img2img):
        return AlwaysVisible

    def ui(self, is_img2img):
        return {"on": Checkbox("On", False)}
'''


def _extension(folder: Path) -> Path:
    (folder / "scripts").mkdir(parents=True)
    (folder / "extension.json").write_text(json.dumps({"name": folder.name, "version": "0.1"}))
    (folder / "scripts" / "marker.py").write_text(SCRIPT)
    return folder


def test_disabled_names_survive_a_restart_and_a_broken_file_reads_as_none(tmp_path: Path) -> None:
    assert read_disabled(tmp_path) == frozenset()
    write_disabled(tmp_path, frozenset({"b", "a"}))
    assert read_disabled(tmp_path) == {"a", "b"}
    (tmp_path / "extensions.json").write_text("{broken")
    assert read_disabled(tmp_path) == frozenset()


def test_install_from_a_folder_checks_layout_and_names(tmp_path: Path) -> None:
    source = _extension(tmp_path / "src" / "marker-ext")
    target = install_from_folder(source, tmp_path / "extensions")
    assert (target / "scripts" / "marker.py").is_file() and target.name == "marker-ext"
    with pytest.raises(ExtensionInstallError, match="exists already"):
        install_from_folder(source, tmp_path / "extensions")
    with pytest.raises(ExtensionInstallError, match="not a usable folder name"):
        install_from_folder(source, tmp_path / "extensions", name="../escape")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExtensionInstallError, match="not an extension"):
        install_from_folder(tmp_path / "empty", tmp_path / "extensions")


def test_install_from_git_clones_and_refuses_what_is_not_a_git_url(tmp_path: Path) -> None:
    repo = _extension(tmp_path / "repo" / "marker-ext")
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
    target = install_from_git(f"file://{repo}", tmp_path / "extensions")
    assert target.name == "marker-ext" and (target / "scripts" / "marker.py").is_file()
    for bad in ("--upload-pack=touch /tmp/x", "not a url", "ftp://host/x.git"):
        with pytest.raises(ExtensionInstallError, match="not a git URL"):
            install_from_git(bad, tmp_path / "extensions")
    with pytest.raises(ExtensionInstallError, match="git clone .* failed"):
        install_from_git(f"file://{tmp_path}/missing.git", tmp_path / "extensions")
    assert not (tmp_path / "extensions" / "missing").exists()


def _studio(data_dir: Path, listen: bool = False) -> Studio:
    args = argparse.Namespace(data_dir=data_dir, ckpt_dir=[], precision="fp32", no_half=False, device="cpu",
                              listen=listen)
    return Studio(build_app_context(args), SettingsStore(data_dir / "config.json"))


def test_studio_installs_switches_off_and_on_again(data_dir: Path) -> None:
    source = _extension(data_dir / "downloads" / "marker-ext")
    studio = _studio(data_dir)
    try:
        studio.install_extension(str(source))
        assert "marker-ext" in [e.name for e in studio.extensions()]
        studio.submit_txt2img({**BASE, "alwayson_scripts": {"Marker": {"args": [True]}}})
        studio.set_extensions_enabled({"marker-ext": False})
        with pytest.raises(RequestValidationError, match="Marker"):
            studio.submit_txt2img({**BASE, "alwayson_scripts": {"Marker": {"args": [True]}}})
        assert not [e for e in studio.extensions() if e.name == "marker-ext"][0].enabled
    finally:
        studio.close()
    restarted = _studio(data_dir)  # the switch is remembered
    try:
        assert not [e for e in restarted.extensions() if e.name == "marker-ext"][0].enabled
        restarted.set_extensions_enabled({"marker-ext": True})
        restarted.submit_txt2img({**BASE, "alwayson_scripts": {"Marker": {"args": [True]}}})
    finally:
        restarted.close()


def test_installing_is_refused_on_an_exposed_server(data_dir: Path) -> None:
    studio = _studio(data_dir, listen=True)
    try:
        with pytest.raises(ProcessingError, match="--enable-insecure-extension-access"):
            studio.install_extension(str(_extension(data_dir / "downloads" / "x")))
        assert not (data_dir / "extensions" / "x").exists()
    finally:
        studio.close()
