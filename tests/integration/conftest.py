"""Databases for the integration tests: a fresh PostgreSQL database per test session (on the server at
127.0.0.1:5432, or ``SEMID_TEST_POSTGRES_URL``) and a SQLite file per test. Tests that take
``database_url`` run on both; the PostgreSQL half carries the ``postgres`` mark.

``private_postgres`` gives a test its own PostgreSQL cluster that it may stop and start.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from app.db.migrate import upgrade
from app.db.session import create_db_engine
from tests.integration.private_postgres import PrivatePostgres, find_pg_bin

POSTGRES_ADMIN_URL = os.environ.get(
    "SEMID_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """URL of a database created for this test session and dropped after it."""
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"semid_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        where = make_url(POSTGRES_ADMIN_URL).render_as_string(hide_password=True)
        pytest.skip(f"PostgreSQL at {where} is unreachable: {str(exc).splitlines()[0]}")
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def reset_postgres_schema(url: str) -> None:
    engine = create_db_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


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


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started PostgreSQL cluster of this test's own (``.url``, ``.stop()``, ``.start()``)."""
    pg_bin = find_pg_bin()
    if pg_bin is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin")
    cluster = PrivatePostgres(pg_bin)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
