"""Item ids a hostile client sends: a NUL is an unknown item on every database (PostgreSQL refuses to
compare it, which is not an outage), and an error message never echoes more than 100 characters."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_a_nul_in_an_item_id_is_404_not_an_outage(client: TestClient) -> None:
    response = client.get("/items/by-item-id/tt1074638%00")
    assert response.status_code == 404, response.text
    assert response.json()["error"] == "item_not_found"
    assert "retry-after" not in response.headers


def test_error_messages_truncate_what_they_echo(client: TestClient) -> None:
    response = client.get("/items/by-item-id/" + "x" * 60_000)
    assert response.status_code == 404
    assert len(response.content) < 400 and "60000 characters" in response.json()["detail"]
