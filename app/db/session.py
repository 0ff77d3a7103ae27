"""Engines and sessions from a ``DATABASE_URL``: PostgreSQL (psycopg 3) in production, SQLite embedded."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = "sqlite:///artifacts/catalogue.db"
PG_CONNECT_TIMEOUT_S = 5
SQLITE_BUSY_TIMEOUT_MS = 5000


def normalise_url(database_url: str) -> URL:
    """Parse ``database_url``; plain ``postgresql://`` / ``postgres://`` mean the installed psycopg 3."""
    url = make_url(database_url.replace("postgres://", "postgresql://", 1))
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url


def create_db_engine(database_url: str, **engine_kwargs: Any) -> Engine:
    """An engine for ``database_url``; extra keyword arguments go to ``create_engine``."""
    url = normalise_url(database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, engine_kwargs)
    if url.get_backend_name() == "postgresql":
        connect_args: dict[str, Any] = {}
        if "connect_timeout" not in url.query:
            # A host that does not answer should fail a readiness probe, not hang it.
            connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
        engine_kwargs.setdefault("pool_pre_ping", True)
        return create_engine(url, connect_args=connect_args, **engine_kwargs)
    return create_engine(url, **engine_kwargs)


def create_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def _sqlite_engine(url: URL, engine_kwargs: dict[str, Any]) -> Engine:
    database = url.database
    in_memory = database in (None, "", ":memory:") or "mode=memory" in str(url)
    if not in_memory and database is not None:
        # sqlite:///artifacts/catalogue.db should work in a fresh checkout.
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **engine_kwargs)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL lets the API read while a catalogue load writes; ignored for in-memory databases.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()
