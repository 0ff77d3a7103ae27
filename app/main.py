"""The FastAPI app factory; `semid-service serve` runs it (or `uvicorn --factory app.main:create_app`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from app.api import router
from app.docs import install_docs
from app.errors import CatchAllMiddleware, install_error_handlers
from app.limits import BodyLimitMiddleware
from app.metrics import Metrics, MetricsMiddleware
from app.openapi import install_openapi
from app.page import install_page
from app.service import Service
from app.settings import Settings


def create_app(settings: Settings | None = None, *, service: Service | None = None) -> FastAPI:
    """An app that loads the bundle once at start-up (or serves ``service``, already loaded).

    Start-up checks the bundle against the database's catalogue and fails fast (``BundleMismatch``,
    ``DatabaseUnavailable``) before the app accepts any request; ``semid-service serve`` loads before
    starting the server, so such a failure is one line instead of a traceback.
    """
    settings = settings or Settings()
    metrics = service.metrics if service is not None else Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        running = service if service is not None else await run_in_threadpool(Service.load, settings, metrics)
        await running.start()
        app.state.service = running
        try:
            yield
        finally:
            app.state.service = None
            await running.stop()

    app = FastAPI(
        title="semantic-id-recommender",
        summary="Free-text recommendations through semantic IDs and trie-constrained decoding.",
        lifespan=lifespan,
        # A trailing slash is a different URL, not a 307 to the same item: one item, one URL.
        redirect_slashes=False,
        # FastAPI's own docs pages load Swagger UI and ReDoc from a CDN; install_docs serves them locally.
        docs_url=None,
        redoc_url=None,
    )
    app.state.metrics = metrics
    app.state.service = None
    app.include_router(router)
    install_error_handlers(app)
    install_openapi(app, settings)
    install_docs(app)
    install_page(app)
    # The last added is the outermost: metrics see the catch-all's 500s.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        read_timeout_s=settings.body_read_timeout_s,
        large_bodies=("POST", "/items/batch", settings.max_update_body_bytes),
    )
    app.add_middleware(CatchAllMiddleware, metrics=metrics)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
