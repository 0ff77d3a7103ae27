"""CatalogueRepository: lookups by either ID, batch lookups in one query and in order, the loaded state."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event

from app.db.loader import load_catalogue
from app.db.repository import CatalogueRepository, ItemNotFound
from app.db.session import create_db_engine
from semantic_ids.ids import SemanticId
from tests.helpers.private_postgres import free_port
from tests.helpers.sample_catalogue import make_items

ITEMS = make_items(8)


def _sid(item: dict[str, Any]) -> SemanticId:
    return SemanticId(tuple(item["semantic_id"]))


@pytest.fixture
def repository(migrated_engine: Engine) -> CatalogueRepository:
    load_catalogue(migrated_engine, ITEMS, "v1")
    return CatalogueRepository(migrated_engine)


class StatementLog:
    """Every SQL statement the engine sends (an event listener, not a mock)."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)

    @property
    def selects(self) -> list[str]:
        return [s for s in self.statements if s.lstrip().upper().startswith("SELECT")]


@pytest.fixture
def statements(migrated_engine: Engine) -> Iterator[StatementLog]:
    log = StatementLog()
    event.listen(migrated_engine, "before_cursor_execute", log)
    yield log
    event.remove(migrated_engine, "before_cursor_execute", log)


def test_get_by_semantic_id(repository: CatalogueRepository) -> None:
    row = repository.get_by_semantic_id(SemanticId.parse("[SEM_START][SEM_0_3][SEM_1_0][SEM_2_1][SEM_END]"))
    assert row.item_id == "tt0000003"
    assert row.semantic_id == SemanticId((3, 0, 1))
    assert row.title == "Film 3"
    assert row.fields == {"year": 1993, "genres": ["Drama", "Sci-Fi"], "rating": 7.5}
    assert row.catalogue_version == "v1"


def test_get_by_item_id(repository: CatalogueRepository) -> None:
    row = repository.get_by_item_id("tt0000006")
    assert row.semantic_id.compact == "2-1-0" and row.title == "Film 6"


def test_unknown_ids_raise_item_not_found(repository: CatalogueRepository) -> None:
    with pytest.raises(ItemNotFound, match="no item has semantic ID 3-3-3") as error:
        repository.get_by_semantic_id(SemanticId((3, 3, 3)))
    assert error.value.missing == ("3-3-3",)
    with pytest.raises(ItemNotFound, match="no item has item_id 'tt404'"):
        repository.get_by_item_id("tt404")


def test_get_many_keeps_the_callers_order_in_one_query(
    repository: CatalogueRepository, statements: StatementLog
) -> None:
    wanted = [_sid(ITEMS[i]) for i in (5, 0, 7, 3, 0)]  # shuffled, with a repeat

    rows = repository.get_many_by_semantic_ids(wanted)

    assert [row.item_id for row in rows] == ["tt0000005", "tt0000000", "tt0000007", "tt0000003", "tt0000000"]
    assert [row.semantic_id for row in rows] == wanted
    assert len(statements.selects) == 1


def test_get_many_names_every_missing_id(repository: CatalogueRepository) -> None:
    with pytest.raises(ItemNotFound) as error:
        repository.get_many_by_semantic_ids([_sid(ITEMS[1]), SemanticId((3, 3, 3)), SemanticId((0, 9, 0))])
    assert error.value.missing == ("3-3-3", "0-9-0")


def test_get_many_of_nothing_asks_nothing(repository: CatalogueRepository, statements: StatementLog) -> None:
    assert repository.get_many_by_semantic_ids([]) == []
    assert statements.statements == []


def test_count_and_catalogue_state(migrated_engine: Engine) -> None:
    repository = CatalogueRepository(migrated_engine)
    assert repository.count() == 0
    assert repository.catalogue_state() is None

    before = datetime.now(UTC)
    load_catalogue(migrated_engine, ITEMS, "hash-v1")

    assert repository.count() == 8
    state = repository.catalogue_state()
    assert state is not None
    assert (state.version, state.item_count) == ("hash-v1", 8)
    assert state.loaded_at.tzinfo is not None
    assert before - timedelta(seconds=1) <= state.loaded_at <= datetime.now(UTC) + timedelta(seconds=1)


def test_ping(migrated_engine: Engine) -> None:
    assert CatalogueRepository(migrated_engine).ping()


def test_ping_is_false_when_nothing_listens() -> None:
    engine = create_db_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres")
    try:
        assert not CatalogueRepository(engine).ping()
    finally:
        engine.dispose()
