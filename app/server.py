"""Run the service under uvicorn: load first (so a bad bundle fails in one line), then serve."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from app.main import create_app
from app.metrics import Metrics
from app.service import Service
from app.settings import Settings

logger = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """A uvicorn server that calls ``on_ready`` once it is listening."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._on_ready is not None:
            self._on_ready()


def run_server(settings: Settings, *, on_ready: Callable[[], None] | None = None) -> None:
    """Load the bundle, check it against the database, warm up, then serve until interrupted.

    Raises ``BundleMismatch`` or ``DatabaseUnavailable`` before anything listens.
    """
    service = Service.load(settings, Metrics())
    _Server(uvicorn_config(create_app(settings, service=service), settings), on_ready).run()


def uvicorn_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    """The server's connection limits come from ``settings``, like the body limit (``app.limits``)."""
    # log_config=None: uvicorn logs through the root logger the entry point configured. No access
    # log: /metrics counts and times every request by route without a line per request.
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_keep_alive=settings.timeout_keep_alive_s,
        h11_max_incomplete_event_size=settings.h11_max_incomplete_event_size,
        limit_concurrency=settings.limit_concurrency,
    )
