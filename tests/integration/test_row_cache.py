"""RowCache over the real repository: rows read once, in the caller's order, never older than a clear."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy import Engine, event, text

from app.db.loader import load_catalogue
from app.db.repository import CatalogueRepository, ItemNotFound, ItemRow
from app.db.row_cache import RowCache
from semantic_ids.ids import SemanticId
from tests.helpers.sample_catalogue import make_items

ITEMS = make_items(8)
IDS = [SemanticId(tuple(item["semantic_id"])) for item in ITEMS]


@pytest.fixture
def repository(migrated_engine: Engine) -> CatalogueRepository:
    load_catalogue(migrated_engine, ITEMS, "v1")
    return CatalogueRepository(migrated_engine)


def _selects(engine: Engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def test_rows_come_in_order_and_are_read_once(repository: CatalogueRepository) -> None:
    cache = RowCache(repository, capacity=100)
    seen = _selects(repository.engine)
    wanted = [IDS[3], IDS[1], IDS[3]]
    assert [row.item_id for row in cache.get_many(wanted)] == ["tt0000003", "tt0000001", "tt0000003"]
    assert len([s for s in seen if "FROM items" in s]) == 1  # the two rows in one query
    again = cache.get_many([IDS[1], IDS[5]])  # one held, one read
    assert [row.item_id for row in again] == ["tt0000001", "tt0000005"]
    assert len([s for s in seen if "FROM items" in s]) == 2 and len(cache) == 3
    cache.get_many(wanted)
    assert len([s for s in seen if "FROM items" in s]) == 2  # all held: no query


def test_a_cleared_cache_reads_the_database_again(repository: CatalogueRepository) -> None:
    cache = RowCache(repository, capacity=100)
    assert cache.get_many([IDS[2]])[0].title == "Film 2"
    with repository.engine.begin() as connection:
        connection.execute(text("UPDATE items SET title = 'Film 2, restored' WHERE item_id = 'tt0000002'"))
    assert cache.get_many([IDS[2]])[0].title == "Film 2"  # held: the change is announced by a clear
    cache.clear()
    assert cache.get_many([IDS[2]])[0].title == "Film 2, restored"


class ClearedWhileReading(CatalogueRepository):
    """A repository whose read overlaps a clear (a catalogue change landing meanwhile)."""

    cache: RowCache

    def get_many_by_semantic_ids(self, semantic_ids: Sequence[SemanticId]) -> list[ItemRow]:
        rows = super().get_many_by_semantic_ids(semantic_ids)
        self.cache.clear()
        return rows


def test_rows_read_across_a_clear_are_not_stored(migrated_engine: Engine) -> None:
    load_catalogue(migrated_engine, ITEMS, "v1")
    repository = ClearedWhileReading(migrated_engine)
    repository.cache = cache = RowCache(repository, capacity=100)
    assert [row.item_id for row in cache.get_many([IDS[4]])] == ["tt0000004"]  # the caller gets them
    assert len(cache) == 0  # but they may predate the change: not kept


def test_the_capacity_bounds_what_is_held(repository: CatalogueRepository) -> None:
    cache = RowCache(repository, capacity=2)
    for semantic_id in IDS[:3]:
        cache.get_many([semantic_id])
    assert len(cache) == 2
    seen = _selects(repository.engine)
    cache.get_many([IDS[0]])  # stored first, gone first
    assert len([s for s in seen if "FROM items" in s]) == 1
    off = RowCache(repository, capacity=0)
    off.get_many(IDS[:2])
    assert len(off) == 0


def test_a_missing_row_is_named(repository: CatalogueRepository) -> None:
    cache = RowCache(repository, capacity=100)
    cache.get_many([IDS[0]])
    with pytest.raises(ItemNotFound) as error:
        cache.get_many([IDS[0], SemanticId((30, 30, 30))])
    assert list(error.value.missing) == ["30-30-30"]
