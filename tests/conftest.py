"""Fixtures shared by the integration and end-to-end tests: a PostgreSQL database per test session
(on the shared server; skipped when it is unreachable) and a private PostgreSQL cluster per test."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from tests.helpers.postgres import POSTGRES_ADMIN_URL
from tests.helpers.private_postgres import PrivatePostgres, find_pg_bin

# Service tests compare rankings with fp32 references; bf16 serving has its own test.
os.environ.setdefault("SEMID_PRECISION", "fp32")


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
