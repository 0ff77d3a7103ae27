"""Item ids a hostile client sends: a NUL is an unknown item on every database (PostgreSQL refuses to
compare it, which is not an outage), and an error message never echoes more than 100 characters."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.helpers.tiny_bundle import TinyBundle


def test_a_nul_in_an_item_id_is_404_not_an_outage(client: TestClient) -> None:
    response = client.get("/items/by-item-id/tt1074638%00")
    assert response.status_code == 404, response.text
    assert response.json()["error"] == "item_not_found"
    assert "retry-after" not in response.headers


def test_error_messages_truncate_what_they_echo(client: TestClient) -> None:
    response = client.get("/items/by-item-id/" + "x" * 60_000)
    assert response.status_code == 404
    assert len(response.content) < 400 and "60000 characters" in response.json()["detail"]


def test_one_item_has_one_url(client: TestClient, tiny_bundle: TinyBundle) -> None:
    compact = "-".join(str(code) for code in tiny_bundle.items[7]["semantic_id"])
    assert client.get(f"/items/{compact}").status_code == 200
    arabic = compact.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    fullwidth = compact.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    for spelling in (arabic, fullwidth, f"0{compact}", f"%20{compact}", f"{compact}%20", f"{compact}%0A"):
        response = client.get(f"/items/{spelling}")
        assert response.status_code == 422, spelling
        assert response.json()["error"] == "invalid_semantic_id"


def test_a_trailing_slash_is_not_redirected(client: TestClient, tiny_bundle: TinyBundle) -> None:
    compact = "-".join(str(code) for code in tiny_bundle.items[7]["semantic_id"])
    for path in (f"/items/{compact}/", "/items/by-item-id/a%2F"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"
