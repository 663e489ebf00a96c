"""Request body limits for the JSON APIs, enforced before the body is read into memory.

A body whose ``Content-Length`` is over the limit is answered 413 at once; a chunked body is
counted as it arrives and cut off at the limit. Only ``/sdapi/`` and ``/api/`` are limited:
gradio's own upload routes have their own limit (``max_file_size``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["MAX_BODY_BYTES", "BodyLimit"]

MAX_BODY_BYTES = 64 * 2**20  # base64 images: a 16-megapixel PNG is under 48 MB
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def _answer_413(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"body: larger than the {limit // 2**20} MB limit"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """ASGI middleware: 413 for API bodies over ``max_bytes``."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int = MAX_BODY_BYTES,
                 prefixes: tuple[str, ...] = ("/sdapi/", "/api/")) -> None:
        self.app, self.max_bytes, self.prefixes = app, max_bytes, prefixes

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _answer_413(send, self.max_bytes)
            return
        received = 0
        answered = False  # True once this middleware has sent the 413 itself

        async def counted_receive() -> Message:
            nonlocal received, answered
            message = await receive()
            if message.get("type") == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes and not answered:
                    # Answer now and tell the app the client left: it stops reading, and
                    # whatever it would answer is dropped below.
                    answered = True
                    await _answer_413(send, self.max_bytes)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not answered:
                await send(message)

        await self.app(scope, counted_receive, guarded_send)
