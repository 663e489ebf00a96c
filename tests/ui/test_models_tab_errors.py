"""What the Models tab says when an install, delete or note edit is refused."""

from __future__ import annotations

from modules.models.install import ModelInstallError
from modules.ui.models_tab import _user_error


def test_a_refused_install_names_its_field_once() -> None:
    message = str(_user_error(ModelInstallError("url", "the download is a web page; nothing was installed")))
    assert message.count("url:") == 1 and "web page" in message


def test_an_os_error_is_shown_as_it_is() -> None:
    assert "Permission denied" in str(_user_error(PermissionError("Permission denied")))
