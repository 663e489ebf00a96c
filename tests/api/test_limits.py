"""Body limits and malformed JSON on the JSON APIs: a 4xx, never a 500, never a big buffer."""

from __future__ import annotations

from typing import Any

from fastapi import Body, FastAPI
from fastapi.testclient import TestClient
from starlette.middleware import Middleware

from modules.api.limits import BodyLimit


def _client(limit: int) -> TestClient:
    app = FastAPI(middleware=[Middleware(BodyLimit, max_bytes=limit)])

    @app.post("/sdapi/v1/echo")
    def echo(body: Any = Body(...)) -> dict[str, Any]:  # noqa: B008
        return {"type": type(body).__name__}

    @app.post("/other")
    def other(body: Any = Body(...)) -> dict[str, Any]:  # noqa: B008
        return {"ok": True}

    return TestClient(app)


def test_a_declared_or_streamed_body_over_the_limit_is_413_before_it_is_read() -> None:
    client = _client(1000)
    assert client.post("/sdapi/v1/echo", json={"a": "x" * 100}).json() == {"type": "dict"}
    response = client.post("/sdapi/v1/echo", content=b'{"a": "' + b"x" * 2000 + b'"}',
                           headers={"content-type": "application/json"})
    assert response.status_code == 413 and "body" in response.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"a": "'
        for _ in range(10):
            yield b"x" * 200
        yield b'"}'

    response = client.post("/sdapi/v1/echo", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert client.post("/other", content=b'{"a": "' + b"x" * 2000 + b'"}',
                       headers={"content-type": "application/json"}).status_code == 200  # not an API route


def test_deeply_nested_or_broken_json_is_a_client_error() -> None:
    client = _client(10_000_000)
    for raw in (b"[" * 100_000 + b"]" * 100_000, b'{"a": ', b"\xff\xfe"):
        response = client.post("/sdapi/v1/echo", content=raw, headers={"content-type": "application/json"})
        assert 400 <= response.status_code < 500, (raw[:10], response.status_code)
