"""Password guessing against a live server: the API's HTTP Basic auth and the page's login form
are both slowed down per client address (429 + Retry-After), and the right password works
again once the short lockout is over. A lockout would break the shared server's other tests,
so this module starts its own, with the real limits (a burst of 10, then 1 s, doubling)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from modules.api.login_limit import LoginPolicy
from tests.security.conftest import PASSWORD, USER, assert_reveals_nothing, write_data_dir
from tests.ui.live_server import start_server

pytestmark = pytest.mark.slow
GUESSES = 60  # the attack's count; the burst lets LoginPolicy().burst of them through


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from start_server(write_data_dir(tmp_path_factory.mktemp("login-data")), "--listen",
                            "--gradio-auth", f"{USER}:{PASSWORD}")


def _client(url: str, source: str) -> httpx.Client:
    """A client whose requests come from ``source`` (any 127.x address reaches a --listen server)."""
    return httpx.Client(base_url=url, timeout=60, transport=httpx.HTTPTransport(local_address=source))


def _wait_out(response: httpx.Response) -> None:
    """Sleep for as long as the 429 says."""
    time.sleep(int(response.headers["retry-after"]) + 0.2)


def test_api_basic_auth_guessing_is_locked_out_then_the_password_works(own_server: str) -> None:
    with _client(own_server, "127.0.0.2") as client:
        answers = [client.get("sdapi/v1/sd-models", auth=(USER, f"guess-{i}")) for i in range(GUESSES)]
        statuses = [a.status_code for a in answers]
        burst = LoginPolicy().burst
        assert statuses[:burst] == [401] * burst
        assert set(statuses[burst:]) == {429}, statuses  # every guess past the burst is refused unchecked
        refused = answers[-1]
        assert int(refused.headers["retry-after"]) >= 1 and "try again" in refused.json()["detail"]
        assert_reveals_nothing(refused, PASSWORD)
        # Locked: even the right password is refused until the lockout ends ...
        assert client.get("sdapi/v1/sd-models", auth=(USER, PASSWORD)).status_code == 429
        # ... which is soon, and the other API prefixes are guarded by the same table.
        assert client.get("api/v1/jobs", auth=(USER, "nope")).status_code == 429
        _wait_out(refused)
        assert client.get("sdapi/v1/sd-models", auth=(USER, PASSWORD)).status_code == 200
        # The success cleared the record: a fresh typo is a plain 401, not a lockout.
        assert client.get("health", auth=(USER, "typo")).status_code == 401


def test_login_form_guessing_is_locked_out_then_the_password_works(own_server: str) -> None:
    with _client(own_server, "127.0.0.3") as client:
        answers = [client.post("login", data={"username": USER, "password": f"guess-{i}"}) for i in range(GUESSES)]
        statuses = [a.status_code for a in answers]
        burst = LoginPolicy().burst
        assert statuses[:burst] == [400] * burst  # gradio's "Incorrect credentials."
        assert set(statuses[burst:]) == {429}, statuses
        refused = answers[-1]
        assert int(refused.headers["retry-after"]) >= 1
        assert_reveals_nothing(refused, PASSWORD)
        _wait_out(refused)
        logged_in = client.post("login", data={"username": USER, "password": PASSWORD})
        assert logged_in.status_code == 200 and logged_in.json() == {"success": True}
        assert client.get("config").status_code == 200  # the session cookie works


def test_a_locked_address_does_not_lock_out_the_others(own_server: str) -> None:
    with _client(own_server, "127.0.0.4") as attacker, _client(own_server, "127.0.0.5") as user:
        statuses = [attacker.get("sdapi/v1/sd-models", auth=(USER, f"g{i}")).status_code for i in range(GUESSES)]
        assert statuses[-1] == 429
        assert user.get("sdapi/v1/sd-models", auth=(USER, PASSWORD)).status_code == 200
        assert user.post("login", data={"username": USER, "password": PASSWORD}).status_code == 200


def test_a_made_up_header_on_an_open_route_does_not_clear_a_lockout(own_server: str) -> None:
    """The page and its assets answer 200 without checking a password: such a 200 is no success."""
    with _client(own_server, "127.0.0.6") as client:
        burst = LoginPolicy().burst
        for i in range(burst):  # the last of these locks the address
            client.get("sdapi/v1/sd-models", auth=(USER, f"g{i}"))
        _wait_out(client.get("sdapi/v1/sd-models", auth=(USER, "x")))
        assert client.get("", auth=(USER, "whatever")).status_code == 200  # the login page: no password checked
        assert client.get("sdapi/v1/sd-models", auth=(USER, "again")).status_code == 401
        assert client.get("sdapi/v1/sd-models", auth=(USER, "again")).status_code == 429
