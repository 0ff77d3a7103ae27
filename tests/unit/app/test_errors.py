"""The one place that maps errors to HTTP: database errors are classified (a value the database cannot
hold is the request's fault, only an unreachable database is an outage), and anything unmapped is a
JSON 500 with a request id, counted."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError, SQLAlchemyError

from app.errors import CatchAllMiddleware, install_error_handlers
from app.metrics import Metrics

RAISED: dict[str, SQLAlchemyError | Exception] = {
    "data": DataError("SELECT", {}, Exception("PostgreSQL text fields cannot contain NUL (0x00) bytes")),
    "operational": OperationalError("SELECT", {}, Exception("connection refused")),
    "interface": InterfaceError("SELECT", {}, Exception("connection closed")),
    "integrity": IntegrityError("INSERT", {}, Exception("duplicate key")),
    "bug": KeyError("oops"),
}


@pytest.fixture
def client_and_metrics() -> tuple[TestClient, Metrics]:
    app = FastAPI()
    metrics = Metrics()

    @app.get("/raise/{kind}")
    def raise_it(kind: str) -> None:
        raise RAISED[kind]

    install_error_handlers(app)
    app.add_middleware(CatchAllMiddleware, metrics=metrics)
    return TestClient(app, raise_server_exceptions=True), metrics


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("data", 422, "invalid_request"),
        ("operational", 503, "database_unavailable"),
        ("interface", 503, "database_unavailable"),
        ("integrity", 500, "internal_error"),
        ("bug", 500, "internal_error"),
    ],
)
def test_errors_are_classified(
    client_and_metrics: tuple[TestClient, Metrics], kind: str, status: int, code: str
) -> None:
    client, metrics = client_and_metrics
    response = client.get(f"/raise/{kind}")
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert ("retry-after" in response.headers) == (status == 503)
    if status == 500:
        assert response.json()["request_id"] == response.headers["x-request-id"]
        assert "oops" not in response.text and "duplicate" not in response.text  # no internals leak
    assert metrics.unhandled_errors._value.get() == (1 if status == 500 else 0)
