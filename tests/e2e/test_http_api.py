"""The HTTP API end to end, on SQLite and on PostgreSQL: a real tiny bundle, a real database, the real app."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semantic_ids.ids import SemanticId
from tests.helpers.service import catalogue_ids, metric_value
from tests.helpers.tiny_bundle import TinyBundle


def recommend(client: TestClient, body: Any) -> Any:
    response = client.post("/recommend", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_recommend_returns_ranked_items_from_the_catalogue(
    client: TestClient, tiny_bundle: TinyBundle
) -> None:
    body = recommend(client, {"query": "Alien", "k": 5, "mode": "generative"})
    items = body["items"]
    assert body["mode"] == "generative"
    assert [item["rank"] for item in items] == [1, 2, 3, 4, 5]
    scores = [item["score"] for item in items]
    assert scores == sorted(scores, reverse=True) and all(0.0 < s <= 1.0 for s in scores)
    assert all(item["sources"] == ["model"] and item["scores"]["model"] == item["score"] for item in items)
    assert all(item["scores"]["lexical"] is None for item in items)
    assert body["model"] == tiny_bundle.manifest.bundle_id
    assert body["timing_ms"] > 0
    by_id = {item["item_id"]: item for item in tiny_bundle.items}
    for item in items:
        expected = by_id[item["item_id"]]  # a real catalogue row, with its own fields and ID
        assert item["title"] == expected["title"] and item["fields"] == expected["fields"]
        assert SemanticId.parse(item["semantic_id"]).codes == tuple(expected["semantic_id"])
        assert SemanticId.parse(item["semantic_id_tokens"]) == SemanticId.parse(item["semantic_id"])
    assert items[0]["title"] == "Alien"  # the tiny model was trained to write each title's ID


@pytest.mark.parametrize("mode", ["hybrid", "generative", "lexical"])
@pytest.mark.parametrize("title", ["Heat", "Ran", "Juno", "Coco"])
def test_a_title_ranks_its_own_film_first(client: TestClient, title: str, mode: str) -> None:
    body = recommend(client, {"query": title, "mode": mode})
    assert body["mode"] == mode and body["items"][0]["title"] == title


def test_hybrid_is_the_default_and_names_sources_and_component_scores(client: TestClient) -> None:
    body = recommend(client, {"query": "a crime drama by Michael Mann", "k": 20})
    assert body["mode"] == "hybrid" and len(body["items"]) == 20
    assert len({item["item_id"] for item in body["items"]}) == 20
    sources = [tuple(item["sources"]) for item in body["items"]]
    assert set(sources) <= {("model",), ("lexical",), ("model", "lexical")}
    assert any("lexical" in s for s in sources) and any("model" in s for s in sources)
    for item in body["items"]:
        assert 0.0 < item["scores"]["model"] <= 1.0 and 0.0 <= item["scores"]["lexical"] <= 1.0
    lexical = recommend(client, {"query": "Michael Mann", "k": 3, "mode": "lexical"})["items"]
    assert all(i["sources"] == ["lexical"] and i["scores"]["model"] is None for i in lexical)
    assert all(i["fields"]["director"] == "Michael Mann" for i in lexical)


@pytest.mark.parametrize("mode", ["dense", "HYBRID", "", 3, None])
def test_an_unknown_mode_is_422_with_the_modes_named(client: TestClient, mode: Any) -> None:
    response = client.post("/recommend", json={"query": "Alien", "mode": mode})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_request"
    assert "mode: Input should be 'hybrid', 'generative' or 'lexical'" in response.json()["detail"]


def test_openapi_documents_the_modes(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    mode = schemas["RecommendRequest"]["properties"]["mode"]
    assert mode["enum"] == ["hybrid", "generative", "lexical"] and mode["default"] == "hybrid"
    assert "reciprocal" in schemas["RecommendedItem"]["properties"]["score"]["description"]
    assert set(schemas["RecommendedItem"]["properties"]) >= {"sources", "scores"}


def test_the_query_is_trimmed_and_k_defaults_to_10(client: TestClient) -> None:
    plain = recommend(client, {"query": "Fargo"})
    padded = recommend(client, {"query": "  \n Fargo\t "})
    assert len(plain["items"]) == 10
    assert [i["semantic_id"] for i in padded["items"]] == [i["semantic_id"] for i in plain["items"]]


def test_k_above_the_catalogue_size_returns_every_item_once(
    client: TestClient, tiny_bundle: TinyBundle
) -> None:
    items = recommend(client, {"query": "a film", "k": 50})["items"]
    assert len(items) == 20
    assert {item["semantic_id"] for item in items} == catalogue_ids(tiny_bundle)


BAD_BODIES: list[tuple[str, Any, str]] = [
    ("empty query", {"query": ""}, "query"),
    ("blank query", {"query": "   \n"}, "query is empty"),
    ("missing query", {"k": 3}, "query"),
    ("query not a string", {"query": 42}, "query"),
    ("query a list", {"query": ["a"]}, "query"),
    ("query null", {"query": None}, "query"),
    ("over-long query", {"query": "x" * 513}, "at most 512 characters"),
    ("k zero", {"query": "a", "k": 0}, "k"),
    ("k negative", {"query": "a", "k": -3}, "k"),
    ("k too large", {"query": "a", "k": 51}, "between 1 and 50"),
    ("k a string", {"query": "a", "k": "10"}, "k"),
    ("k a float", {"query": "a", "k": 2.5}, "k"),
    ("k a whole float", {"query": "a", "k": 2.0}, "k"),
    ("k a bool", {"query": "a", "k": True}, "k"),
    ("k null", {"query": "a", "k": None}, "k"),
    ("unknown field", {"query": "a", "top_k": 3}, "top_k"),
    ("body a list", ["a"], "dictionary"),
    ("body a string", "a film", "dictionary"),
]


@pytest.mark.parametrize(("name", "body", "mentions"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_recommend_input_is_422_with_a_message(
    client: TestClient, name: str, body: Any, mentions: str
) -> None:
    response = client.post("/recommend", json=body)
    assert response.status_code == 422, response.text
    payload = response.json()
    assert payload["error"] == "invalid_request"
    assert mentions in payload["detail"]


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"{not json", {"content-type": "application/json"}),
        (b"", {"content-type": "application/json"}),
        (b"query=a", {"content-type": "application/x-www-form-urlencoded"}),
        (b"\xff\xfe", {"content-type": "application/json"}),
        (b'{"query": "a", "k": Infinity}', {"content-type": "application/json"}),
        (b'{"query": NaN}', {"content-type": "application/json"}),
    ],
)
def test_malformed_bodies_are_422(client: TestClient, content: bytes, headers: dict[str, str]) -> None:
    response = client.post("/recommend", content=content, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        _json_values,
        st.fixed_dictionaries(
            {"query": st.one_of(st.text(max_size=40), _json_values)},
            optional={"k": st.one_of(st.integers(-5, 80), _json_values)},
        ),
    )
)
def test_no_body_makes_the_server_fail(client: TestClient, body: Any) -> None:
    response = client.post("/recommend", json=body)
    assert response.status_code in (200, 422), response.text
    if response.status_code == 200:
        assert all(1 <= item["rank"] <= 50 for item in response.json()["items"])


def test_items_by_compact_id_token_form_and_item_id_agree(
    client: TestClient, tiny_bundle: TinyBundle
) -> None:
    item = tiny_bundle.items[7]
    semantic_id = SemanticId(tuple(item["semantic_id"]))
    compact = client.get(f"/items/{semantic_id.compact}")
    tokens = client.get(f"/items/{quote(semantic_id.tokens, safe='')}")
    by_item_id = client.get(f"/items/by-item-id/{item['item_id']}")
    assert compact.status_code == tokens.status_code == by_item_id.status_code == 200
    assert compact.json() == tokens.json() == by_item_id.json()
    assert compact.json() == {
        "item_id": item["item_id"],
        "title": item["title"],
        "fields": item["fields"],
        "semantic_id": semantic_id.compact,
        "semantic_id_tokens": semantic_id.tokens,
    }


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/items/3-3-1", 404, "item_not_found"),  # well formed, in range, but no item has it
        ("/items/by-item-id/tt9999999", 404, "item_not_found"),
        ("/items/abc", 422, "invalid_semantic_id"),
        ("/items/1-2", 422, "invalid_semantic_id"),  # too few levels for this catalogue
        ("/items/9-0-0", 422, "invalid_semantic_id"),  # code out of range
        ("/items/1--2", 422, "invalid_semantic_id"),
        ("/items/-1-0-0", 422, "invalid_semantic_id"),
        (f"/items/{quote('[SEM_START][SEM_0_1][SEM_END]', safe='')}", 422, "invalid_semantic_id"),
        (
            f"/items/{quote('[SEM_START][SEM_1_0][SEM_0_0][SEM_2_0][SEM_END]', safe='')}",
            422,
            "invalid_semantic_id",
        ),
        ("/items/" + "1-" * 40 + "1", 422, "invalid_semantic_id"),
        ("/nowhere", 404, "not_found"),
    ],
)
def test_unknown_is_404_and_malformed_is_422(client: TestClient, path: str, status: int, error: str) -> None:
    response = client.get(path)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error and response.json()["detail"]


def test_wrong_method_is_405(client: TestClient) -> None:
    assert client.get("/recommend").status_code == 405


def test_health_readiness_and_metrics(client: TestClient, tiny_bundle: TinyBundle) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["bundle"] == tiny_bundle.manifest.bundle_id and ready.json()["catalogue_items"] == 20
    client.get("/items/0-0-0")
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert metric_value(text, "semid_invalid_decodes_total") == 0.0
    assert metric_value(text, "semid_catalogue_items") == 20.0
    assert 'route="/items/{semantic_id}"' in text  # the template, not the raw path
    assert "/items/0-0-0" not in text
    assert f'bundle_id="{tiny_bundle.manifest.bundle_id}"' in text
    assert "semid_decode_seconds_count" in text and "semid_decode_batch_size_bucket" in text
    before = {m: _mode_count(text, m) for m in ("hybrid", "generative", "lexical")}
    fusions = metric_value(text, "semid_fusion_seconds_count")
    for mode in ("hybrid", "lexical", "lexical"):
        recommend(client, {"query": "Heat", "mode": mode})
    text = client.get("/metrics").text
    assert _mode_count(text, "hybrid") == before["hybrid"] + 1
    assert _mode_count(text, "lexical") == before["lexical"] + 2
    assert _mode_count(text, "generative") == before["generative"]
    assert metric_value(text, "semid_fusion_seconds_count") == fusions + 1


def _mode_count(metrics_text: str, mode: str) -> float:
    prefix = f'semid_recommend_requests_total{{mode="{mode}"}} '
    (line,) = [line for line in metrics_text.splitlines() if line.startswith(prefix)]
    return float(line.split()[-1])
