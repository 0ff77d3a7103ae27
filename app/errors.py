"""Domain errors mapped to HTTP, in this one place. Routes raise (or let through) domain errors only.

Every error answers with ``ErrorResponse`` (``{"error": code, "detail": message}``), so a client never
has to parse two shapes; nothing a client sends can produce a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.db import ItemNotFound
from app.inference.batching import Overloaded, ServiceStopping
from app.schemas import ErrorResponse
from semantic_ids.ids import InvalidSemanticId

logger = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_S = 2


class InvalidRequest(ValueError):
    """A well-typed request outside the service's configured limits (k, query length)."""


class DatabaseUnavailable(ConnectionError):
    """The catalogue database cannot be reached or is not set up (no tables, no catalogue)."""


def _error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(error=code, detail=detail).model_dump()
    return JSONResponse(status_code=status, content=body, headers=headers)


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """``k: Input should be less than or equal to 50; query: Field required`` (the body prefix dropped)."""
    parts = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part != "body"]
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        parts.append(f"{'.'.join(location)}: {message}" if location else message)
    return "; ".join(parts) or "invalid request"


async def _validation(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return _error(422, "invalid_request", describe_validation_errors(error.errors()))


async def _invalid_request(request: Request, error: Exception) -> JSONResponse:
    return _error(422, "invalid_request", str(error))


async def _invalid_semantic_id(request: Request, error: Exception) -> JSONResponse:
    return _error(422, "invalid_semantic_id", str(error))


async def _not_found(request: Request, error: Exception) -> JSONResponse:
    return _error(404, "item_not_found", str(error))


async def _overloaded(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, Overloaded)
    return _error(503, "overloaded", str(error), {"Retry-After": str(error.retry_after_s)})


async def _stopping(request: Request, error: Exception) -> JSONResponse:
    return _error(503, "stopping", str(error), {"Retry-After": "1"})


async def _database(request: Request, error: Exception) -> JSONResponse:
    # The database going away is an outage to retry through, not a bug in the request.
    logger.warning("database error on %s: %s", request.url.path, str(error).splitlines()[0])
    detail = "the catalogue database is unavailable; retry shortly"
    return _error(503, "database_unavailable", detail, {"Retry-After": str(DATABASE_RETRY_AFTER_S)})


async def _http(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
    return _error(error.status_code, code, str(error.detail), dict(error.headers or {}))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(InvalidRequest, _invalid_request)
    app.add_exception_handler(InvalidSemanticId, _invalid_semantic_id)
    app.add_exception_handler(ItemNotFound, _not_found)
    app.add_exception_handler(Overloaded, _overloaded)
    app.add_exception_handler(ServiceStopping, _stopping)
    app.add_exception_handler(DatabaseUnavailable, _database)
    app.add_exception_handler(SQLAlchemyError, _database)
    app.add_exception_handler(StarletteHTTPException, _http)
