"""HTTP routes: thin handlers that validate, call the service, and return a response model."""

from fastapi import APIRouter

from app.api import health, item_changes, items, recommend

router = APIRouter()
router.include_router(recommend.router)
router.include_router(items.router)
router.include_router(item_changes.router)
router.include_router(health.router)

__all__ = ["router"]
