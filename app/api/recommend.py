from __future__ import annotations

from fastapi import APIRouter

from app.api.dependencies import ServiceDep
from app.schemas import ErrorResponse, RecommendRequest, RecommendResponse

router = APIRouter(tags=["recommend"])


@router.post(
    "/recommend",
    responses={422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
)
async def recommend(body: RecommendRequest, service: ServiceDep) -> RecommendResponse:
    """The catalogue items that best fit a free-text query, best first."""
    return await service.recommend(body)
