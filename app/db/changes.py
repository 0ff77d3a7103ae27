"""Apply a catalogue change (items added, changed, deleted) to the database in one transaction.

The bulk loader (``app.db.loader``) makes the table equal a whole catalogue; a change touches only its
own rows, so adding one item costs one insert whatever the catalogue's size. The transaction first
checks that the database holds the catalogue the change was computed against (``expected_version``):
a catalogue loaded by someone else meanwhile is a conflict, never overwritten.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, text

from app.db.loader import chunked, record_state, validate_rows
from app.db.models import CATALOGUE_STATE_ID, CatalogueState, Item
from semantic_ids.ids import IdScheme


class CatalogueConflict(RuntimeError):
    """The database holds another catalogue than the one the change applies to."""


def apply_changes(
    engine: Engine,
    upserts: Sequence[dict[str, Any]],
    deleted: Sequence[str],
    *,
    expected_version: str,
    version: str,
    item_count: int,
    scheme: IdScheme | None = None,
) -> None:
    """Replace the ``upserts`` rows (bundle catalogue rows), delete the ``deleted`` item ids, and record
    ``version`` and ``item_count``; all or nothing."""
    rows = validate_rows(upserts, scheme) if upserts else []
    with engine.begin() as connection:
        _check_version(connection, expected_version)
        replaced = [*deleted, *(row.item_id for row in rows)]
        for chunk in chunked(replaced):
            connection.execute(delete(Item).where(Item.item_id.in_(chunk)))
        for chunk in chunked(rows):
            connection.execute(insert(Item), [row.values(version) for row in chunk])
        record_state(connection, version, item_count, exists=True)


def _check_version(connection: Connection, expected: str) -> None:
    if connection.dialect.name == "postgresql":
        # Changes are serialised by the service; this keeps a bulk load from interleaving with one.
        connection.execute(text("LOCK TABLE items IN SHARE ROW EXCLUSIVE MODE"))
    held = connection.execute(
        select(CatalogueState.version).where(CatalogueState.id == CATALOGUE_STATE_ID)
    ).scalar()
    if held != expected:
        raise CatalogueConflict(
            f"the database holds catalogue {str(held)[:12]}, not the served {expected[:12]}: "
            "reload it (`semid-service load-catalogue`) and restart the service"
        )
