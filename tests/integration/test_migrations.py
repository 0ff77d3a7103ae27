"""The Alembic revision creates exactly the models' tables, and goes down and up again cleanly."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, insert, inspect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError

from app.db.loader import load_catalogue
from app.db.migrate import current_revision, downgrade, upgrade
from app.db.models import Base, Item
from app.db.repository import CatalogueRepository
from app.db.session import create_db_engine
from tests.helpers.sample_catalogue import make_items

CATALOGUE_TABLES = {"items", "catalogue_state"}


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def test_upgrade_then_downgrade_then_upgrade_again(database_url: str, engine: Engine) -> None:
    assert _tables(engine) == set()

    upgrade(database_url)
    assert _tables(engine) == CATALOGUE_TABLES | {"alembic_version"}
    assert current_revision(database_url) == "0001"

    downgrade(database_url, "base")
    assert _tables(engine) & CATALOGUE_TABLES == set()
    assert current_revision(database_url) is None

    upgrade(database_url)
    assert _tables(engine) >= CATALOGUE_TABLES
    load_catalogue(engine, make_items(3), "v1")
    assert CatalogueRepository(engine).count() == 3


def test_migration_matches_the_models(migrated_engine: Engine) -> None:
    with migrated_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_semantic_id_has_a_unique_index(migrated_engine: Engine) -> None:
    indexes = {index["name"]: index for index in inspect(migrated_engine).get_indexes("items")}
    assert indexes["ix_items_semantic_id"]["column_names"] == ["semantic_id"]
    assert indexes["ix_items_semantic_id"]["unique"]
    row = {"semantic_id": "1-2-0", "codes": [1, 2, 0], "title": "A", "fields": {}, "catalogue_version": "v"}
    with pytest.raises(IntegrityError), migrated_engine.begin() as connection:
        connection.execute(insert(Item), [{"item_id": "a", **row}, {"item_id": "b", **row}])


@pytest.mark.postgres
def test_fields_are_jsonb_on_postgresql(postgres_url: str) -> None:
    upgrade(postgres_url)
    engine = create_db_engine(postgres_url)
    try:
        columns = {column["name"]: column for column in inspect(engine).get_columns("items")}
    finally:
        engine.dispose()
    assert isinstance(columns["fields"]["type"], JSONB)
