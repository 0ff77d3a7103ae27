"""Readiness re-checks the catalogue: another catalogue loaded into the database under a running
service makes it not ready (its IDs would name the wrong rows) until the served one is back."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.main import create_app
from tests.helpers.service import prepare_database, service_settings
from tests.helpers.tiny_bundle import TinyBundle


def test_readiness_reports_a_catalogue_swapped_under_the_service(
    tiny_bundle: TinyBundle, catalogue_url: str
) -> None:
    app = create_app(service_settings(tiny_bundle, catalogue_url, catalogue_check_interval_s=0))
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/readyz").status_code == 200
        try:
            prepare_database(catalogue_url, tiny_bundle, version="another-catalogue")
            response = client.get("/readyz")
            assert response.status_code == 503
            assert response.json()["reason"].startswith("the database holds catalogue another-cata")
        finally:
            prepare_database(catalogue_url, tiny_bundle)
        assert client.get("/readyz").status_code == 200


def test_the_check_is_cached_for_the_interval(tiny_bundle: TinyBundle, catalogue_url: str) -> None:
    app = create_app(service_settings(tiny_bundle, catalogue_url, catalogue_check_interval_s=3600))
    with TestClient(app, raise_server_exceptions=False) as client:
        try:
            prepare_database(catalogue_url, tiny_bundle, version="another-catalogue")
            assert client.get("/readyz").status_code == 200  # not re-read yet: probes stay cheap
        finally:
            prepare_database(catalogue_url, tiny_bundle)
