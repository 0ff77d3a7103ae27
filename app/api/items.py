from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.dependencies import ServiceDep
from app.schemas import ErrorResponse, ItemPublic

router = APIRouter(prefix="/items", tags=["items"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
}


# Declared before /{semantic_id}; the two never compete anyway, as a semantic ID is one path segment.
@router.get("/by-item-id/{item_id}", responses=_ERRORS)
def item_by_item_id(item_id: str, service: ServiceDep) -> ItemPublic:
    """One catalogue row by its catalogue id (e.g. an IMDb id)."""
    return service.item_by_item_id(item_id)


@router.get("/{semantic_id}", responses=_ERRORS)
def item_by_semantic_id(semantic_id: str, service: ServiceDep) -> ItemPublic:
    """One catalogue row by semantic ID: compact (``12-7-33-0``) or URL-encoded token form."""
    return service.item_by_semantic_id(semantic_id)
