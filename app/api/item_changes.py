"""Catalogue updates: add, replace and delete items while serving, behind the admin token.

Thin like every route: the service validates, applies all or nothing, and answers what each item's ID
is now and why (``app.catalogue_updates``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request

from app.api.dependencies import AdminDep, ServiceDep
from app.catalogue_updates import ChangeRejected, ChangeReport, parse_jsonl
from app.schemas import CatalogueChangeResponse, ErrorResponse, ItemChangeOutcome

router = APIRouter(prefix="/items", tags=["catalogue updates"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (401, 403, 404, 409, 413, 422, 503)
}
_ITEM_EXAMPLE = {
    "title": "The Matrix Resurrections",
    "fields": {"year": 2021, "genres": ["Action", "Sci-Fi"], "director": "Lana Wachowski"},
}


@router.put("/{item_id}", responses=_ERRORS)
async def put_item(
    item_id: str,
    service: ServiceDep,
    _: AdminDep,
    body: Annotated[dict[str, Any], Body(examples=[_ITEM_EXAMPLE])],
) -> CatalogueChangeResponse:
    """Add an item, or replace the one with this id; served from the next request on. A new item gets
    its ID from the bundle's RQ-VAE; a changed one keeps its ID unless its content moved it."""
    if "item_id" in body and body["item_id"] != item_id:
        raise ChangeRejected(f"the body's item_id {body['item_id']!r} is not the path's {item_id!r}")
    return _response(await service.change_items([{**body, "item_id": item_id}]))


@router.delete("/{item_id}", responses=_ERRORS)
async def delete_item(item_id: str, service: ServiceDep, _: AdminDep) -> CatalogueChangeResponse:
    """Stop serving an item; its semantic ID is retired and never given to another."""
    return _response(await service.change_items([{"item_id": item_id, "delete": True}]))


@router.post(
    "/batch",
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
            "description": 'JSONL: one item per line in the catalogue\'s import form ({"item_id", "title", '
            '...fields}), or {"item_id": ..., "delete": true}.',
        }
    },
)
async def change_batch(request: Request, service: ServiceDep, _: AdminDep) -> CatalogueChangeResponse:
    """Many changes at once (JSONL), all or nothing: one trie and index rebuild for the whole batch."""
    body = await request.body()  # read only after the token was checked
    return _response(await service.change_items(parse_jsonl(body)))


def _response(report: ChangeReport) -> CatalogueChangeResponse:
    return CatalogueChangeResponse(
        items=[ItemChangeOutcome(**vars(outcome)) for outcome in report.outcomes],
        counts=report.counts,
        catalogue_hash=report.catalogue_hash,
        item_count=report.item_count,
        overlay_version=report.overlay_version,
        seconds=report.seconds,
    )
