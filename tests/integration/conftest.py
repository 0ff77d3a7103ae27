"""Databases for the integration tests: the session's PostgreSQL database (``tests/conftest.py``) and a
SQLite file per test. Tests that take ``database_url`` run on both; the PostgreSQL half carries the
``postgres`` mark.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from app.db.migrate import upgrade
from app.db.session import create_db_engine
from tests.helpers.postgres import reset_postgres_schema


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """The session's PostgreSQL database, emptied (no tables) for this test."""
    reset_postgres_schema(postgres_database)
    return postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database (no tables) on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalogue.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def migrated_engine(database_url: str, engine: Engine) -> Engine:
    """``engine`` on a database upgraded to the newest migration."""
    upgrade(database_url)
    return engine
