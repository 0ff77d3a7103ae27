"""The dense source over HTTP: a tiny bundle with item vectors and a fusion that uses them, served on
SQLite by the real app (the tiny hashing encoder stands in for MiniLM, which only reads real text)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.inference import model_loading
from app.main import create_app
from semantic_ids.bundle import FusionParams
from semantic_ids.item_text import render_row
from tests.helpers.service import metric_value, prepare_database, service_settings
from tests.helpers.tiny_bundle import TinyBundle, make_tiny_bundle
from tests.helpers.tiny_encoder import HashingEncoder


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> TinyBundle:
    fusion = FusionParams(dense_depth=5, dense_weight=8.0)
    return make_tiny_bundle(tmp_path_factory.mktemp("dense-service"), dense=True, fusion=fusion)


@pytest.fixture(scope="module")
def client(bundle: TinyBundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'catalogue.db'}"
    prepare_database(url, bundle)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model_loading, "encoder_for", lambda model, device: HashingEncoder())
        with TestClient(
            create_app(service_settings(bundle, url)), raise_server_exceptions=False
        ) as test_client:
            yield test_client


def recommend(client: TestClient, body: Any) -> Any:
    response = client.post("/recommend", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_hybrid_items_carry_the_dense_source_and_score(client: TestClient, bundle: TinyBundle) -> None:
    before = metric_value(client.get("/metrics").text, "semid_dense_seconds_count")
    item = bundle.items[6]
    body = recommend(client, {"query": render_row(item), "k": 20})
    assert body["mode"] == "hybrid" and len({i["item_id"] for i in body["items"]}) == 20
    by_id = {i["item_id"]: i for i in body["items"]}
    assert "dense" in by_id[item["item_id"]]["sources"]
    assert by_id[item["item_id"]]["scores"]["dense"] == pytest.approx(1.0, abs=1e-5)
    assert all(-1.0 <= i["scores"]["dense"] <= 1.0 + 1e-6 for i in body["items"])
    assert all(set(i["sources"]) <= {"model", "lexical", "dense"} for i in body["items"])
    assert metric_value(client.get("/metrics").text, "semid_dense_seconds_count") == before + 1
    generative = recommend(client, {"query": "Alien", "k": 3, "mode": "generative"})["items"]
    assert all(i["scores"]["dense"] is None and i["sources"] == ["model"] for i in generative)


def test_openapi_documents_the_dense_source(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    item = schemas["RecommendedItem"]["properties"]
    assert "dense" in item["sources"]["items"]["enum"] and "`dense`" in item["sources"]["description"]
    dense = schemas["ComponentScores"]["properties"]["dense"]
    assert "Cosine similarity" in dense["description"] and "dense" in schemas["ComponentScores"]["required"]
