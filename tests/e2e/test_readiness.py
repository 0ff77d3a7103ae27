"""Readiness follows the database: a private PostgreSQL cluster is stopped under a running service and
started again; the service reports 503 meanwhile and recovers by itself."""

from __future__ import annotations

import time

import httpx
import pytest

from app.main import create_app
from tests.helpers.live_server import live_server
from tests.helpers.private_postgres import PrivatePostgres
from tests.helpers.service import prepare_database, service_settings
from tests.helpers.tiny_bundle import TinyBundle

pytestmark = pytest.mark.postgres


def _wait_for_status(client: httpx.Client, path: str, status: int, timeout_s: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.get(path)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_readiness_follows_the_database_and_recovers(
    private_postgres: PrivatePostgres, tiny_bundle: TinyBundle
) -> None:
    prepare_database(private_postgres.url, tiny_bundle)
    item_id = tiny_bundle.items[3]["item_id"]
    app = create_app(service_settings(tiny_bundle, private_postgres.url))
    with live_server(app) as base_url, httpx.Client(base_url=base_url, timeout=15) as client:
        assert client.get("/readyz").status_code == 200

        private_postgres.stop()
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["reason"] == "the catalogue database is unreachable"
        assert client.get("/healthz").status_code == 200  # alive, just not ready
        for response in (
            client.get(f"/items/by-item-id/{item_id}"),
            client.post("/recommend", json={"query": "Rocky"}),
        ):
            assert response.status_code == 503, response.text
            assert response.json()["error"] == "database_unavailable"
            assert response.headers["retry-after"]

        private_postgres.start()
        assert _wait_for_status(client, "/readyz", 200).status_code == 200
        assert client.get(f"/items/by-item-id/{item_id}").status_code == 200
        # A title the tiny model ranks first (test_http_api checks it); "Rocky" is not one on this CPU.
        assert client.post("/recommend", json={"query": "Heat"}).json()["items"][0]["title"] == "Heat"
