"""End-to-end fixtures: one tiny bundle per session, and a catalogue database holding it on SQLite and
on PostgreSQL (the DB engineer's session database on 127.0.0.1:5432), served by a real app.

The PostgreSQL fixtures come from ``tests/conftest.py``; the helpers from ``tests/helpers/service.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.helpers.postgres import reset_postgres_schema
from tests.helpers.service import prepare_database, service_settings
from tests.helpers.tiny_bundle import TinyBundle, make_tiny_bundle


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> TinyBundle:
    return make_tiny_bundle(tmp_path_factory.mktemp("service"))


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
