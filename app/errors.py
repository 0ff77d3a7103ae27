"""Domain errors mapped to HTTP, in this one place. Routes raise (or let through) domain errors only.

Every error answers with ``ErrorResponse`` (``{"error": code, "detail": message}``), so a client never
has to parse two shapes; nothing a client sends can produce a 500. Should a bug slip through anyway,
``CatchAllMiddleware`` answers a JSON 500 carrying a request id, counts it and logs the traceback.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import (
    DataError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.catalogue_updates import ChangeRejected, UpdatesUnavailable
from app.db import ItemNotFound
from app.db.changes import CatalogueConflict
from app.inference.batching import Overloaded, ServiceStopping
from app.inference.engine import QueryRejected
from app.metrics import Metrics
from app.schemas import ErrorResponse
from semantic_ids.id_allocation import IdSpaceFull
from semantic_ids.ids import InvalidSemanticId

logger = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_S = 2


class InvalidRequest(ValueError):
    """A well-typed request outside the service's configured limits (k, query length)."""


class DeadlineExceeded(TimeoutError):
    """A request was not answered within the configured deadline (queue wait plus decode)."""


class DatabaseUnavailable(ConnectionError):
    """The catalogue database cannot be reached or is not set up (no tables, no catalogue)."""


def _error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(error=code, detail=detail).model_dump(exclude_none=True)
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


async def _change_rejected(request: Request, error: Exception) -> JSONResponse:
    return _error(422, "invalid_change", str(error))


async def _updates_unavailable(request: Request, error: Exception) -> JSONResponse:
    return _error(403, "updates_unavailable", str(error))


async def _conflict(request: Request, error: Exception) -> JSONResponse:
    code = "id_space_full" if isinstance(error, IdSpaceFull) else "catalogue_conflict"
    return _error(409, code, str(error))


async def _overloaded(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, Overloaded)
    return _error(503, "overloaded", str(error), {"Retry-After": str(error.retry_after_s)})


async def _deadline(request: Request, error: Exception) -> JSONResponse:
    return _error(504, "deadline_exceeded", str(error), {"Retry-After": "1"})


async def _stopping(request: Request, error: Exception) -> JSONResponse:
    return _error(503, "stopping", str(error), {"Retry-After": "1"})


# Errors that mean the database is away or not set up (no tables): an outage to retry through. Anything
# else the database raises is about the request (DataError: a value it cannot hold) or a bug.
_OUTAGES = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout, ProgrammingError)


async def _sqlalchemy(request: Request, error: Exception) -> JSONResponse:
    if isinstance(error, DataError):
        logger.info("database refused a value on %s: %s", request.url.path, str(error).splitlines()[0])
        return _error(422, "invalid_request", "the request holds a value the catalogue database cannot store")
    if isinstance(error, _OUTAGES):
        return await _database(request, error)
    raise error  # a bug, not an outage: the catch-all answers 500 and logs it with a request id


async def _database(request: Request, error: Exception) -> JSONResponse:
    logger.warning("database error on %s: %s", request.url.path, str(error).splitlines()[0])
    detail = "the catalogue database is unavailable; retry shortly"
    return _error(503, "database_unavailable", detail, {"Retry-After": str(DATABASE_RETRY_AFTER_S)})


async def _http(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code = {
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        408: "request_timeout",
        413: "payload_too_large",
    }.get(error.status_code, "http_error")
    return _error(error.status_code, code, str(error.detail), dict(error.headers or {}))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(InvalidRequest, _invalid_request)
    app.add_exception_handler(QueryRejected, _invalid_request)
    app.add_exception_handler(InvalidSemanticId, _invalid_semantic_id)
    app.add_exception_handler(ItemNotFound, _not_found)
    app.add_exception_handler(ChangeRejected, _change_rejected)
    app.add_exception_handler(UpdatesUnavailable, _updates_unavailable)
    app.add_exception_handler(IdSpaceFull, _conflict)
    app.add_exception_handler(CatalogueConflict, _conflict)
    app.add_exception_handler(Overloaded, _overloaded)
    app.add_exception_handler(ServiceStopping, _stopping)
    app.add_exception_handler(DeadlineExceeded, _deadline)
    app.add_exception_handler(DatabaseUnavailable, _database)
    app.add_exception_handler(SQLAlchemyError, _sqlalchemy)
    app.add_exception_handler(StarletteHTTPException, _http)


class CatchAllMiddleware:
    """The last line of defence: an exception no handler maps becomes a JSON 500 with a request id.

    A pure ASGI middleware rather than an ``Exception`` handler, because Starlette re-raises after such
    a handler (the server would log every error twice); installed inside ``MetricsMiddleware`` so the
    500 is also counted by route.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def send_and_track(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_and_track)
        except Exception:
            request_id = uuid.uuid4().hex
            self.metrics.unhandled_errors.inc()
            logger.exception("unhandled error on %s (request id %s)", scope.get("path", "?"), request_id)
            if response_started:  # too late for a JSON body; the server closes the connection
                raise
            body = ErrorResponse(
                error="internal_error",
                detail=f"an unexpected error occurred; quote request id {request_id} when reporting it",
                request_id=request_id,
            ).model_dump()
            response = JSONResponse(status_code=500, content=body, headers={"X-Request-ID": request_id})
            await response(scope, receive, send)
