"""Load a bundle's catalogue into the database in one transaction: insert, update, delete, record state.

Re-running with the same rows changes nothing. Any failure rolls the whole load back, so the tables
keep the previous catalogue. Rows whose content changed are deleted and re-inserted rather than
updated in place: two items may swap semantic IDs between catalogues, and an in-place update would
trip the unique index halfway through.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, text, update

from app.db.models import CATALOGUE_STATE_ID, ITEM_ID_MAX, VERSION_MAX, CatalogueState, Item
from semantic_ids.ids import IdScheme, InvalidSemanticId, SemanticId

logger = logging.getLogger(__name__)

_CHUNK = 500  # bound parameters per IN (...) list; SQLite caps the number of variables


class CatalogueLoadError(ValueError):
    """The input catalogue is not loadable; the message says which row and what to fix."""


@dataclass(frozen=True, slots=True)
class LoadReport:
    catalogue_version: str
    previous_version: str | None
    inserted: int
    updated: int
    deleted: int
    unchanged: int
    item_count: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Row:
    item_id: str
    semantic_id: SemanticId
    title: str
    fields: dict[str, Any]

    def content(self) -> tuple[str, str, dict[str, Any]]:
        return (self.semantic_id.compact, self.title, self.fields)

    def values(self, catalogue_version: str) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "semantic_id": self.semantic_id.compact,
            "codes": list(self.semantic_id.codes),
            "title": self.title,
            "fields": self.fields,
            "catalogue_version": catalogue_version,
        }


def load_catalogue(
    engine: Engine,
    items: Iterable[Mapping[str, Any]],
    catalogue_version: str,
    *,
    scheme: IdScheme | None = None,
) -> LoadReport:
    """Make the ``items`` table hold exactly ``items`` (bundle ``catalogue.jsonl`` rows: item_id, title,
    fields, semantic_id), stamped with ``catalogue_version``. ``scheme``, when given, checks every ID."""
    started = time.perf_counter()
    if not catalogue_version or len(catalogue_version) > VERSION_MAX:
        raise CatalogueLoadError(f"catalogue_version must be 1 to {VERSION_MAX} characters")
    rows = validate_rows(items, scheme)
    with engine.begin() as connection:
        report = _apply(connection, rows, catalogue_version)
    report = replace(report, seconds=round(time.perf_counter() - started, 3))
    logger.info("catalogue load: %s", report.as_dict())
    return report


def validate_rows(items: Iterable[Mapping[str, Any]], scheme: IdScheme | None = None) -> list[_Row]:
    """Check every row before anything is written; the first problem raises ``CatalogueLoadError``."""
    rows: list[_Row] = []
    by_item_id: dict[str, int] = {}
    by_semantic_id: dict[SemanticId, int] = {}
    for number, raw in enumerate(items, start=1):
        row = _validate_row(number, raw, scheme)
        if row.item_id in by_item_id:
            raise CatalogueLoadError(
                f"catalogue row {number}: item_id {row.item_id!r} already appears on row "
                f"{by_item_id[row.item_id]}"
            )
        if row.semantic_id in by_semantic_id:
            first = rows[by_semantic_id[row.semantic_id] - 1]
            raise CatalogueLoadError(
                f"catalogue row {number}: semantic_id {row.semantic_id.compact} of item {row.item_id!r} is "
                f"already carried by {first.item_id!r} (row {by_semantic_id[row.semantic_id]}); "
                "every item needs a unique ID"
            )
        if rows and len(row.semantic_id.codes) != len(rows[0].semantic_id.codes):
            raise CatalogueLoadError(
                f"catalogue row {number}: semantic_id {row.semantic_id.compact} has "
                f"{len(row.semantic_id.codes)} codes, row 1 has {len(rows[0].semantic_id.codes)}"
            )
        by_item_id[row.item_id] = number
        by_semantic_id[row.semantic_id] = number
        rows.append(row)
    if not rows:
        raise CatalogueLoadError("the catalogue is empty; refusing to delete every item")
    return rows


def _validate_row(number: int, raw: Any, scheme: IdScheme | None) -> _Row:
    where = f"catalogue row {number}"
    if not isinstance(raw, Mapping):
        raise CatalogueLoadError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    item_id, title, codes = raw.get("item_id"), raw.get("title"), raw.get("semantic_id")
    fields = raw.get("fields", {})
    if not isinstance(item_id, str) or not item_id.strip() or len(item_id) > ITEM_ID_MAX:
        raise CatalogueLoadError(
            f"{where}: item_id must be a non-empty string of at most {ITEM_ID_MAX} chars"
        )
    where = f"{where} (item {item_id!r})"
    if not isinstance(title, str):
        raise CatalogueLoadError(f"{where}: title must be a string")
    if "\x00" in item_id or "\x00" in title:
        raise CatalogueLoadError(f"{where}: item_id and title must not contain NUL characters")
    if not isinstance(fields, Mapping):
        raise CatalogueLoadError(f"{where}: fields must be a JSON object")
    if not isinstance(codes, list | tuple):
        raise CatalogueLoadError(f"{where}: semantic_id must be a list of codes, e.g. [12, 7, 33, 0]")
    try:
        semantic_id = SemanticId(tuple(codes))
        if scheme is not None:
            scheme.validate(semantic_id)
    except InvalidSemanticId as exc:
        raise CatalogueLoadError(f"{where}: {exc}") from exc
    return _Row(item_id, semantic_id, title, _json_fields(where, fields))


def _json_fields(where: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON so stored and compared values are the same (and PostgreSQL accepts them)."""
    try:
        encoded = json.dumps(dict(fields), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise CatalogueLoadError(f"{where}: fields are not plain JSON ({exc})") from exc
    if "\\u0000" in encoded:
        raise CatalogueLoadError(f"{where}: fields contain a NUL character, which PostgreSQL cannot store")
    decoded: dict[str, Any] = json.loads(encoded)
    return decoded


def _apply(connection: Connection, rows: Sequence[_Row], version: str) -> LoadReport:
    if connection.dialect.name == "postgresql":
        # One loader at a time; readers (the API) are not blocked and see the old rows until commit.
        connection.execute(text("LOCK TABLE items IN SHARE ROW EXCLUSIVE MODE"))
    existing = {
        item_id: (semantic_id, title, fields)
        for item_id, semantic_id, title, fields in connection.execute(
            select(Item.item_id, Item.semantic_id, Item.title, Item.fields)
        )
    }
    new_ids = {row.item_id for row in rows}
    removed = [item_id for item_id in existing if item_id not in new_ids]
    changed = [row for row in rows if row.item_id in existing and existing[row.item_id] != row.content()]
    added = [row for row in rows if row.item_id not in existing]

    for chunk in chunked([*removed, *(row.item_id for row in changed)]):
        connection.execute(delete(Item).where(Item.item_id.in_(chunk)))
    for chunk in chunked([*changed, *added]):
        connection.execute(insert(Item), [row.values(version) for row in chunk])
    stale = Item.catalogue_version != version
    connection.execute(update(Item).where(stale).values(catalogue_version=version))

    the_state = CatalogueState.id == CATALOGUE_STATE_ID
    previous = connection.execute(
        select(CatalogueState.version, CatalogueState.item_count).where(the_state)
    ).first()
    if previous is None or tuple(previous) != (version, len(rows)) or removed or changed or added:
        record_state(connection, version, len(rows), exists=previous is not None)
    return LoadReport(
        catalogue_version=version,
        previous_version=None if previous is None else previous.version,
        inserted=len(added),
        updated=len(changed),
        deleted=len(removed),
        unchanged=len(rows) - len(changed) - len(added),
        item_count=len(rows),
        seconds=0.0,
    )


def record_state(connection: Connection, version: str, item_count: int, *, exists: bool) -> None:
    values = {"version": version, "item_count": item_count, "loaded_at": datetime.now(UTC)}
    if exists:
        the_state = CatalogueState.id == CATALOGUE_STATE_ID
        connection.execute(update(CatalogueState).where(the_state).values(**values))
    else:
        connection.execute(insert(CatalogueState).values(id=CATALOGUE_STATE_ID, **values))


def chunked(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]
