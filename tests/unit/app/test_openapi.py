"""The OpenAPI schema states the configured limits, every error response, and working examples."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings


def _schema(**overrides: object) -> dict[str, object]:
    client = TestClient(create_app(Settings(**overrides)))  # no lifespan: the schema needs no model
    response = client.get("/openapi.json")
    assert response.status_code == 200
    schema: dict[str, object] = response.json()
    return schema


def test_the_schema_states_the_configured_limits() -> None:
    schema = _schema(max_k=20, max_query_chars=300, max_query_tokens=64)
    request = schema["components"]["schemas"]["RecommendRequest"]["properties"]  # type: ignore[index]
    assert request["k"]["maximum"] == 20 and request["k"]["minimum"] == 1
    assert request["query"]["maxLength"] == 300 and request["query"]["minLength"] == 1
    assert "64 tokens" in request["query"]["description"]
    body = schema["paths"]["/recommend"]["post"]["requestBody"]["content"]["application/json"]  # type: ignore[index]
    assert all(example["value"]["query"] for example in body["examples"].values())
    parameters = schema["paths"]["/items/{semantic_id}"]["get"]["parameters"]  # type: ignore[index]
    assert parameters[0]["example"] == "12-7-33-0" and "ASCII digits" in parameters[0]["description"]


def test_every_error_response_is_documented() -> None:
    paths = _schema()["paths"]
    recommend = paths["/recommend"]["post"]["responses"]  # type: ignore[index]
    assert set(recommend) == {"200", "400", "408", "413", "422", "500", "503", "504"}
    assert recommend["413"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
    assert "Retry-After" in recommend["503"]["headers"]
    assert {"404", "422", "503"} <= set(paths["/items/{semantic_id}"]["get"]["responses"])  # type: ignore[index]
    assert {"404", "503"} <= set(paths["/items/by-item-id/{item_id}"]["get"]["responses"])  # type: ignore[index]
