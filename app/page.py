"""The page at ``/`` where a person tries queries: static HTML, CSS and a little JavaScript from
``app/static/`` (package data), calling ``POST /recommend`` on the same service. Nothing is fetched
from outside."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
STATIC_URL = "/static"


def install_page(app: FastAPI) -> None:
    """Serve the page at ``/`` and its assets under ``/static``."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")
