from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.dependencies import MetricsDep
from app.schemas import Health, Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> Health:
    """The process is alive (says nothing about the model or the database)."""
    return Health(status="ok")


@router.get("/readyz", responses={503: {"model": Readiness}})
def readyz(request: Request, response: Response) -> Readiness:
    """Ready when the bundle is loaded and the database answers; 503 otherwise, until it recovers."""
    service = getattr(request.app.state, "service", None)
    readiness = (
        Readiness(status="not ready", reason="the bundle is loading")
        if service is None
        else service.readiness()
    )
    if readiness.status != "ready":
        response.status_code = 503
    return readiness


@router.get("/metrics", include_in_schema=False)
async def metrics(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
