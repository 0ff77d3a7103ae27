"""The PostgreSQL server the database tests share (127.0.0.1:5432, or ``SEMID_TEST_POSTGRES_URL``)."""

from __future__ import annotations

import os

from sqlalchemy import text

from app.db.session import create_db_engine

POSTGRES_ADMIN_URL = os.environ.get(
    "SEMID_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def reset_postgres_schema(url: str) -> None:
    """Drop every table of ``url``: an empty database for the next test."""
    engine = create_db_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()
