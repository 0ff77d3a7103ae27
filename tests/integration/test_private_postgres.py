"""The private cluster fixture really stops and starts, and an engine recovers across the restart."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from app.db.loader import load_catalogue
from app.db.migrate import upgrade
from app.db.repository import CatalogueRepository
from app.db.session import create_db_engine
from tests.helpers.private_postgres import PrivatePostgres
from tests.helpers.sample_catalogue import make_items


def test_private_postgres_stops_and_starts(private_postgres: PrivatePostgres) -> None:
    upgrade(private_postgres.url)
    engine = create_db_engine(private_postgres.url)
    repository = CatalogueRepository(engine)
    try:
        load_catalogue(engine, make_items(4), "v1")
        assert repository.ping()
        assert repository.get_by_item_id("tt0000002").title == "Film 2"  # leaves a pooled connection

        private_postgres.stop()
        assert not private_postgres.is_running()
        with pytest.raises(OperationalError), engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        assert not repository.ping()

        private_postgres.start()
        assert repository.ping()  # the same engine: pool_pre_ping replaced the dead connection
        assert repository.get_by_item_id("tt0000002").title == "Film 2"
    finally:
        engine.dispose()
