"""Dependency aliases for the routes: the running service, taken from the app's state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

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
