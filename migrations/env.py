"""Alembic environment: the URL comes from the caller (``semid-service migrate``) or ``DATABASE_URL``."""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context

from app.db.models import Base
from app.db.session import DEFAULT_DATABASE_URL, create_db_engine, normalise_url

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def database_url() -> str:
    url = config.attributes.get("database_url") or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    return str(url)


def run_migrations_offline() -> None:
    """``alembic upgrade head --sql``: emit the SQL instead of running it."""
    context.configure(
        url=normalise_url(database_url()),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=normalise_url(database_url()).get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_db_engine(database_url())
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
