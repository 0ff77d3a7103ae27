"""Server limits: an over-long body is refused with a JSON 413 (declared or chunked), a stalled body
with a JSON 408, and the uvicorn limits come from the settings."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from app.errors import install_error_handlers
from app.limits import BodyLimitMiddleware
from app.server import uvicorn_config
from app.settings import Settings


class Body(BaseModel):
    query: str


def make_app(max_bytes: int = 1024, read_timeout_s: float = 5.0) -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    def echo(body: Body) -> Body:
        return body

    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes, read_timeout_s=read_timeout_s)
    return app


def test_bodies_over_the_limit_are_413_json() -> None:
    client = TestClient(make_app())
    assert client.post("/echo", json={"query": "x" * 900}).status_code == 200
    declared = client.post("/echo", json={"query": "x" * 2000})

    def chunks() -> Iterator[bytes]:
        yield b'{"query": "'
        for _ in range(10):
            yield b"x" * 200
        yield b'"}'

    chunked = client.post("/echo", content=chunks(), headers={"content-type": "application/json"})
    for response in (declared, chunked):
        assert response.status_code == 413, response.text
        assert response.json() == {
            "error": "payload_too_large",
            "detail": "the request body is over the 1024-byte limit",
        }


def test_a_stalled_body_is_408_json() -> None:
    app = make_app(read_timeout_s=0.2)
    sent: list[dict[str, Any]] = []

    async def stalled_receive() -> dict[str, Any]:
        if not sent:
            sent.append({})
            return {"type": "http.request", "body": b'{"query": ', "more_body": True}
        await asyncio.sleep(30)
        raise AssertionError("the middleware should have given up")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/echo",
        "raw_path": b"/echo",
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "http_version": "1.1",
        "server": ("test", 80),
        "client": ("test", 1),
        "app": app,
    }
    asyncio.run(asyncio.wait_for(app(scope, stalled_receive, send), 5))
    assert sent[1]["status"] == 408
    assert b"request_timeout" in sent[2]["body"]


def test_uvicorn_limits_come_from_the_settings() -> None:
    settings = Settings(timeout_keep_alive_s=3, h11_max_incomplete_event_size=8192, limit_concurrency=7)
    config = uvicorn_config(FastAPI(), settings)
    assert (config.timeout_keep_alive, config.h11_max_incomplete_event_size, config.limit_concurrency) == (
        3,
        8192,
        7,
    )
    defaults = Settings()
    assert (defaults.max_body_bytes, defaults.body_read_timeout_s, defaults.limit_concurrency) == (
        16384,
        10.0,
        128,
    )
