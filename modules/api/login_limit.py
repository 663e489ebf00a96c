"""Failed logins, limited per client address: password guessing is slowed to a crawl, and the
real user, who mistypes now and then, is never locked out for long.

``LoginLimit`` is an ASGI middleware in front of the whole app. It watches answers to password
attempts: gradio's login form (``POST /login``: 400 on a wrong password, 200 on success) and
any request carrying an ``Authorization`` header (HTTP Basic on ``/sdapi/v1``, ``/api/v1``,
``/health`` and the extensions' routes: 401 on a wrong password; the auth check marks a right
one with ``mark_password_ok``). A request without a password is not an attempt and is never
counted. While an address is locked, its attempts
are answered 429 with ``Retry-After`` before any password is checked.

The address is the connection's peer: behind a reverse proxy every user shares the proxy's
address (and its lockout). ``X-Forwarded-For`` is not trusted, as any client can send it.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PASSWORD_OK", "LoginAttempts", "LoginLimit", "LoginPolicy", "mark_password_ok"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
LOGIN_PATHS = ("/login", "/login/")
#: The key in the ASGI scope's ``state`` that an auth check sets when it accepted a password.
#: Only that counts as a success: a 200 from a route that checks no password (the page, an
#: asset) sent with a made-up Authorization header must not clear a guesser's record.
PASSWORD_OK = "aigen_password_ok"


def mark_password_ok(state: Any) -> None:
    """Tell ``LoginLimit`` that this request's password was right (``state``: ``request.state``)."""
    setattr(state, PASSWORD_OK, True)


@dataclass(frozen=True)
class LoginPolicy:
    """The numbers, in one place.

    ``burst``: 10 wrong passwords in a row are let through at full speed (a user trying their
    few usual passwords, a script with a stale one). After that each further failure locks the
    address for ``lockout_s`` seconds, doubled each time up to ``max_lockout_s``: 1, 2, 4 ... 60 s.
    A guesser then gets about one try a minute (some 1,400 a day, against a password space of
    billions), while a user who mistyped waits at most a minute, usually seconds. Attempts
    refused while locked do not count. A success clears the address's record, and
    ``forget_after_s`` (15 min) without a failure forgets it, so occasional typos never add
    up. At most ``max_clients`` addresses are remembered (the oldest record is dropped first),
    so the table cannot grow without bound.
    """

    burst: int = 10
    lockout_s: float = 1.0
    max_lockout_s: float = 60.0
    forget_after_s: float = 15 * 60.0
    max_clients: int = 10_000


@dataclass
class _Record:
    failures: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0


class LoginAttempts:
    """Failed-login records per client address (thread-safe)."""

    def __init__(self, policy: LoginPolicy | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy or LoginPolicy()
        self._clock = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again (0 when it may now)."""
        with self._lock:
            record = self._current(client)
            return max(0.0, record.locked_until - self._clock()) if record else 0.0

    def failed(self, client: str) -> None:
        """Count a wrong password from ``client``; past the burst it is locked for a while."""
        now, policy = self._clock(), self.policy
        with self._lock:
            record = self._current(client) or _Record()
            record.failures += 1
            record.last_failure = now
            over = record.failures - policy.burst
            if over >= 0:
                record.locked_until = now + min(policy.lockout_s * 2 ** min(over, 32), policy.max_lockout_s)
            self._records[client] = record
            self._records.move_to_end(client)
            while len(self._records) > policy.max_clients:
                self._records.popitem(last=False)

    def succeeded(self, client: str) -> None:
        """The right password from ``client``: forget its failures."""
        with self._lock:
            self._records.pop(client, None)

    def _current(self, client: str) -> _Record | None:
        """``client``'s record, unless it is old enough to forget (then it is dropped)."""
        record = self._records.get(client)
        if record is not None and self._clock() - record.last_failure > self.policy.forget_after_s:
            del self._records[client]
            return None
        return record


def _is_attempt(scope: Message) -> bool:
    """Whether the request tries a password (the login form, or an Authorization header)."""
    if scope.get("method") == "POST" and scope.get("path") in LOGIN_PATHS:
        return True
    return any(name == b"authorization" for name, _ in scope.get("headers") or [])


async def _answer_429(send: Send, seconds: float) -> None:
    wait = max(1, math.ceil(seconds))
    body = json.dumps({"detail": f"too many failed logins from this address; try again in {wait} s"}).encode()
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"retry-after", str(wait).encode())]})
    await send({"type": "http.response.body", "body": body})


class LoginLimit:
    """ASGI middleware: counts failed password attempts per address in ``attempts``, and answers
    429 (with ``Retry-After``) to an address's attempts while it is locked."""

    def __init__(self, app: Callable[..., Awaitable[None]], attempts: LoginAttempts) -> None:
        self.app, self.attempts = app, attempts

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_attempt(scope):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.attempts.retry_after(client)
        if wait > 0:
            await _answer_429(send, wait)
            return
        is_login = scope.get("path") in LOGIN_PATHS

        async def watching_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                if status == 401 or (is_login and status == 400):
                    self.attempts.failed(client)
                elif (is_login and status == 200) or (scope.get("state") or {}).get(PASSWORD_OK):
                    self.attempts.succeeded(client)
            await send(message)

        await self.app(scope, receive, watching_send)
