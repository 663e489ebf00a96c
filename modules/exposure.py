"""Whether the server is reachable beyond this machine, and what that turns off.

Pure functions of the launch flags, so the rules are tested without starting a server.
"""

from __future__ import annotations

__all__ = ["LOOPBACK_NAMES", "extension_install_allowed", "is_exposed"]

#: ``--server-name`` values that keep the server on this machine.
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def is_exposed(listen: bool, share: bool, server_name: str | None) -> bool:
    """True when others can reach the UI: ``--listen``, ``--share`` or a non-loopback ``--server-name``."""
    return listen or share or (server_name is not None and server_name not in LOOPBACK_NAMES)


def extension_install_allowed(listen: bool, share: bool, server_name: str | None,
                              enable_insecure_extension_access: bool) -> bool:
    """Whether the Extensions tab may install, update or remove extensions.

    An extension is code that runs with the server's rights, so, as in A1111, installing one
    from the UI is off when the server is exposed (``is_exposed``) unless the operator passes
    ``--enable-insecure-extension-access``. Unlike A1111, a loopback ``--server-name`` does not
    count as exposed (the same rule as for requiring auth).
    """
    return enable_insecure_extension_access or not is_exposed(listen, share, server_name)
