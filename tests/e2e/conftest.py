"""End-to-end fixtures: one tiny bundle per session, and a catalogue database holding it on SQLite and
on PostgreSQL (the DB engineer's session database on 127.0.0.1:5432), served by a real app.

The PostgreSQL fixtures come from ``tests/integration/conftest.py``; importing them here makes them
visible to these tests too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.db import create_db_engine, load_catalogue
from app.db.migrate import upgrade
from app.main import create_app
from app.settings import Settings
from semantic_ids.bundle import read_catalogue
from tests.integration.conftest import (  # noqa: F401  (fixtures)
    postgres_database,
    private_postgres,
    reset_postgres_schema,
)
from tests.tiny_bundle import TinyBundle, make_tiny_bundle


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> TinyBundle:
    return make_tiny_bundle(tmp_path_factory.mktemp("service"))


def prepare_database(url: str, bundle: TinyBundle, *, version: str | None = None) -> None:
    """Migrate ``url`` and load the bundle's catalogue (stamped ``version``, by default the bundle's hash)."""
    upgrade(url)
    engine = create_db_engine(url)
    try:
        manifest = bundle.manifest
        stamp = version or manifest.catalogue.content_hash
        load_catalogue(engine, read_catalogue(bundle.bundle_dir), stamp, scheme=manifest.semantic_ids.scheme)
    finally:
        engine.dispose()


def service_settings(bundle: TinyBundle, database_url: str, **overrides: Any) -> Settings:
    return Settings(
        bundle_dir=bundle.bundle_dir,
        base_models_dir=bundle.base_models_dir,
        database_url=database_url,
        device="cpu",
        **overrides,
    )


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def catalogue_url(
    request: pytest.FixtureRequest, tiny_bundle: TinyBundle, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A database holding the tiny bundle's catalogue, on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'catalogue.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
        reset_postgres_schema(url)
    prepare_database(url, tiny_bundle)
    return url


@pytest.fixture(scope="module")
def client(tiny_bundle: TinyBundle, catalogue_url: str) -> Iterator[TestClient]:
    """The app, started through its lifespan; server errors come back as 500 responses, not exceptions."""
    app = create_app(service_settings(tiny_bundle, catalogue_url))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def catalogue_ids(bundle: TinyBundle) -> set[str]:
    return {"-".join(str(code) for code in item["semantic_id"]) for item in bundle.items}


def metric_value(metrics_text: str, name: str) -> float:
    """The value of an unlabelled sample in Prometheus text format."""
    for line in metrics_text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")
