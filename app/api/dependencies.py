"""Dependency aliases for the routes: the running service, taken from the app's state."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from starlette.exceptions import HTTPException

from app.catalogue_updates import UpdatesUnavailable
from app.inference.batching import ServiceStopping
from app.metrics import Metrics
from app.service import Service


def get_service(request: Request) -> Service:
    service: Service | None = getattr(request.app.state, "service", None)
    if service is None:
        raise ServiceStopping("the service is not loaded yet")
    return service


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


ServiceDep = Annotated[Service, Depends(get_service)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def require_admin(request: Request, service: ServiceDep) -> None:
    """Catalogue updates need ``Authorization: Bearer <SEMID_ADMIN_TOKEN>``: 401 without a token, 403
    with a wrong one or when the service has none set (updates off)."""
    token = service.settings.admin_token
    if token is None:
        raise UpdatesUnavailable("catalogue updates are off: set SEMID_ADMIN_TOKEN and restart the service")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise HTTPException(
            401,
            "catalogue updates need an admin token: Authorization: Bearer <token>",
            {"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
        raise HTTPException(403, "the admin token is not this service's")


AdminDep = Annotated[None, Depends(require_admin)]
