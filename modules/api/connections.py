"""Connection limits of the web server: a slow or stalled client cannot hold sockets forever.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) and answers 503 past
``limit_concurrency``, but it has no deadline for a request head: a client that sends half a
head and stalls keeps its socket (and file descriptor) open for ever, and 1,500 such sockets
exhaust a default ``ulimit -n`` of 1,024. ``guarded_protocol`` is uvicorn's own h11 protocol
(passed through ``uvicorn.Config(http=...)``, the documented way to choose one) with

- a deadline for each request head, counted from the connection's (or the head's) first byte;
- an idle timeout while a request body arrives (a body that stops arriving is dropped);
- a cap on open connections: one over the cap is closed as soon as it is accepted.

All numbers live in ``ConnectionPolicy``; tests shrink them through ``AIGEN_TEST_LIMITS``
(see ``modules.server``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["ConnectionPolicy", "guarded_protocol", "server_config"]


@dataclass(frozen=True)
class ConnectionPolicy:
    """How long the server waits for a client, and how many sockets it keeps open.

    ``head_timeout_s``: a browser sends a request head (a few hundred bytes to a few KB) in
    one packet; 10 s leaves room for a very slow mobile link and still frees a stalled
    socket quickly. ``body_idle_s``: a body upload may take minutes on a slow link, so it is
    not given a total deadline, only 30 s without a single byte. ``keep_alive_s``: uvicorn's
    default (5 s) for an idle connection between requests. ``max_connections``: a page keeps
    about 6 connections per browser tab, so 512 serves dozens of users and leaves half of a
    default 1,024-descriptor limit for model files, the queue and logs.
    """

    head_timeout_s: float = 10.0
    body_idle_s: float = 30.0
    keep_alive_s: int = 5
    max_connections: int = 512


def guarded_protocol(policy: ConnectionPolicy) -> type[H11Protocol]:
    """uvicorn's h11 protocol with ``policy``'s head deadline, body idle timeout and cap."""

    class GuardedH11Protocol(H11Protocol):
        """One connection; ``_deadline`` closes it when the client stalls (see module docstring)."""

        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if len(self.connections) >= policy.max_connections:
                transport.close()  # over the cap: the descriptor is freed at once
                self.transport = transport
                return
            super().connection_made(transport)
            self._arm(policy.head_timeout_s)  # a connection that never sends a byte times out too

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self not in self.connections:  # closed over the cap: uvicorn never saw it
                return
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self not in self.connections:
                return
            super().data_received(data)
            self._follow_request()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._follow_request()

        def _follow_request(self) -> None:
            """Arm the timer that fits where the current request is."""
            if self.transport.is_closing():
                self._disarm()
            elif self.conn.their_state is h11.IDLE:
                # Waiting for a head: between requests uvicorn's keep-alive timer runs; once
                # bytes of a head arrive, they must complete within the deadline.
                if self.timeout_keep_alive_task is None and self._deadline is None:
                    self._arm(policy.head_timeout_s)
                elif self.timeout_keep_alive_task is not None:
                    self._disarm()
            elif self.conn.their_state is h11.SEND_BODY:
                self._disarm()
                self._arm(policy.body_idle_s)  # restarted by every piece of the body
            else:  # the request is in; the app may take minutes (a generation) to answer
                self._disarm()

        def _arm(self, seconds: float) -> None:
            self._deadline = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            if self.conn.their_state is h11.SEND_BODY and self.flow.read_paused:
                self._arm(policy.body_idle_s)  # we stopped reading (the app is busy): not the client's fault
                return
            self.transport.close()

    return GuardedH11Protocol


def server_config(app: Any, host: str, port: int, policy: ConnectionPolicy) -> Any:
    """The ``uvicorn.Config`` both servers use (the UI's and ``--nowebui``'s)."""
    import uvicorn

    # No ``limit_concurrency``: the protocol's cap already keeps connections (and so requests, one
    # at a time each) under ``max_connections``, and uvicorn's check counts the asking connection
    # itself, so at the cap it would answer 503 to a client that was let in.
    return uvicorn.Config(app, host=host, port=port, log_level="warning", http=guarded_protocol(policy),
                          timeout_keep_alive=policy.keep_alive_s)
