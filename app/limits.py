"""A request body limit and a body read timeout, as a small ASGI middleware.

uvicorn bounds connections, keep-alive and header size (``server.uvicorn_config``), but reads any body
size, and a client that stops sending half-way holds its connection open. Here a declared
``content-length`` over the limit is refused before a byte is read, a chunked body is counted as it
arrives, and each chunk must arrive within ``read_timeout_s``. The errors are raised from ``receive``
as ``HTTPException`` (413, 408): FastAPI passes those through its body parsing, so ``app.errors``
answers them as JSON like every other error; a route that never reads its body is never refused.
"""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        read_timeout_s: float,
        large_bodies: tuple[str, str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s
        # (method, path, limit): the one route that takes a large body (a batch of catalogue changes)
        self.large_bodies = large_bodies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        limit = self.max_bytes
        if self.large_bodies is not None and (scope["method"], scope["path"]) == self.large_bodies[:2]:
            limit = self.large_bodies[2]
        received = 0
        body_complete = False

        async def limited_receive() -> Message:
            nonlocal received, body_complete
            if declared is not None and declared > limit:
                raise self._too_large(limit)
            if body_complete:  # later reads wait for a disconnect: no timeout applies
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.read_timeout_s)
            except TimeoutError:
                raise HTTPException(408, f"the request body stalled for {self.read_timeout_s:g} s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_complete = not message.get("more_body", False)
                if received > limit:
                    raise self._too_large(limit)
            return message

        await self.app(scope, limited_receive, send)

    def _too_large(self, limit: int) -> HTTPException:
        return HTTPException(413, f"the request body is over the {limit}-byte limit")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
