"""Read access to the catalogue: items by semantic ID or item ID, and which catalogue is loaded."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DataError, SQLAlchemyError

from app.db.models import CATALOGUE_STATE_ID, CatalogueState, Item
from app.db.session import create_session_factory
from semantic_ids.ids import SemanticId

logger = logging.getLogger(__name__)

ECHO_LIMIT = 100  # characters of client input an error message repeats


class ItemNotFound(LookupError):
    """No catalogue row carries the requested semantic ID(s) or item ID."""

    def __init__(self, message: str, *, missing: Sequence[str]) -> None:
        super().__init__(message)
        self.missing = tuple(missing)


@dataclass(frozen=True, slots=True)
class ItemRow:
    """One catalogue row, detached from any session."""

    item_id: str
    semantic_id: SemanticId
    title: str
    fields: dict[str, Any]
    catalogue_version: str


@dataclass(frozen=True, slots=True)
class CatalogueStateRow:
    version: str  # the bundle manifest's catalogue.content_hash
    item_count: int
    loaded_at: datetime  # timezone-aware, UTC


class CatalogueRepository:
    """Short-lived sessions per call; safe to share across threads (one instance per app)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = create_session_factory(engine)

    def get_by_semantic_id(self, semantic_id: SemanticId) -> ItemRow:
        with self._sessions() as session:
            item = session.scalars(select(Item).where(Item.semantic_id == semantic_id.compact)).first()
        if item is None:
            compact = semantic_id.compact
            raise ItemNotFound(f"no item has semantic ID {compact}", missing=[compact])
        return _row(item)

    def get_by_item_id(self, item_id: str) -> ItemRow:
        try:
            with self._sessions() as session:
                item = session.get(Item, item_id)
        except DataError:  # e.g. a NUL on PostgreSQL: no row can hold such an id (SQLite just finds none)
            item = None
        if item is None:
            raise ItemNotFound(f"no item has item_id {echo(item_id)}", missing=[item_id])
        return _row(item)

    def get_many_by_semantic_ids(self, semantic_ids: Sequence[SemanticId]) -> list[ItemRow]:
        """Rows in the caller's order, fetched in one query; ``ItemNotFound`` lists any that are missing."""
        wanted = list(dict.fromkeys(sid.compact for sid in semantic_ids))
        if not wanted:
            return []
        with self._sessions() as session:
            items = session.scalars(select(Item).where(Item.semantic_id.in_(wanted)))
            found = {item.semantic_id: _row(item) for item in items}
        missing = [compact for compact in wanted if compact not in found]
        if missing:
            raise ItemNotFound(f"no item has semantic ID(s) {', '.join(missing[:10])}", missing=missing)
        return [found[sid.compact] for sid in semantic_ids]

    def count(self) -> int:
        with self._sessions() as session:
            return session.scalar(select(func.count()).select_from(Item)) or 0

    def catalogue_state(self) -> CatalogueStateRow | None:
        """What the last successful load recorded; ``None`` when no catalogue has been loaded."""
        with self._sessions() as session:
            state = session.get(CatalogueState, CATALOGUE_STATE_ID)
        if state is None:
            return None
        return CatalogueStateRow(state.version, state.item_count, _as_utc(state.loaded_at))

    def ping(self) -> bool:
        """True when the database answers a trivial query (readiness); logs why when it does not."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            logger.warning("database ping failed: %s", str(exc).splitlines()[0])
            return False
        return True


def echo(value: str, limit: int = ECHO_LIMIT) -> str:
    """``value`` quoted for an error message, cut to ``limit`` characters (a 60 KB id is not echoed)."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value)} characters)"


def _row(item: Item) -> ItemRow:
    return ItemRow(
        item_id=item.item_id,
        semantic_id=SemanticId(tuple(item.codes)),
        title=item.title,
        fields=dict(item.fields),
        catalogue_version=item.catalogue_version,
    )


def _as_utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; the loader always writes UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
