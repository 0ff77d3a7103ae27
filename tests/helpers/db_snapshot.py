"""Everything the catalogue tables hold, as plain values, to compare before and after a load."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from app.db.models import CatalogueState, Item


def items_snapshot(engine: Engine) -> list[tuple[Any, ...]]:
    columns = [Item.item_id, Item.semantic_id, Item.codes, Item.title, Item.fields, Item.catalogue_version]
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(select(*columns).order_by(Item.item_id))]


def state_snapshot(engine: Engine) -> tuple[Any, ...] | None:
    columns = [CatalogueState.id, CatalogueState.version, CatalogueState.item_count, CatalogueState.loaded_at]
    with engine.connect() as connection:
        row = connection.execute(select(*columns)).first()
    return None if row is None else tuple(row)
