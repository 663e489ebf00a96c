"""The shared secure server itself: the password is asked for, and given it, the API answers."""

from __future__ import annotations

import httpx


def test_the_api_needs_the_password(server_url: str, api: httpx.Client) -> None:
    assert httpx.get(server_url + "sdapi/v1/sd-models", timeout=30).status_code == 401
    assert api.get("/sd-models").status_code == 200
