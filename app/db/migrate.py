"""Run the Alembic migrations programmatically (the ``semid-service migrate`` step and the tests).

Migrations are their own deployment step (compose ``prestart``); the service never runs them at start-up,
so Alembic is imported only when one runs (half a second of the service's cold start otherwise).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from app.db.session import create_db_engine

if TYPE_CHECKING:
    from alembic.config import Config

ALEMBIC_INI = "alembic.ini"
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


class MigrationsNotFound(FileNotFoundError):
    """No ``alembic.ini`` where the migrations are expected."""


class MigrationFailed(RuntimeError):
    """Alembic refused the migration (an unknown revision, a broken chain); the message says why."""


def find_alembic_ini() -> Path:
    """``$SEMID_ALEMBIC_INI``, else ``./alembic.ini``, else the one beside the source tree."""
    override = os.environ.get("SEMID_ALEMBIC_INI")
    candidates = [Path(override)] if override else [Path.cwd() / ALEMBIC_INI, _SOURCE_ROOT / ALEMBIC_INI]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise MigrationsNotFound(
        f"no {ALEMBIC_INI} at {', '.join(str(c) for c in candidates)}; "
        "run from the repository root or set SEMID_ALEMBIC_INI"
    )


def alembic_config(database_url: str) -> Config:
    from alembic.config import Config

    config = Config(str(find_alembic_ini()))
    # Read by migrations/env.py; kept out of the ini so '%' in passwords needs no escaping.
    config.attributes["database_url"] = database_url
    config.attributes["configure_logging"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    _run("upgrade", database_url, revision)


def downgrade(database_url: str, revision: str) -> None:
    _run("downgrade", database_url, revision)


def _run(step: str, database_url: str, revision: str) -> None:
    from alembic import command
    from alembic.util import CommandError

    try:
        getattr(command, step)(alembic_config(database_url), revision)
    except CommandError as error:
        raise MigrationFailed(str(error)) from error


def current_revision(database_url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
