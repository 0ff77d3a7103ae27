"""The HTTP fuzz's contract check: what counts as a violation."""

from __future__ import annotations

from typing import Any

import httpx

from bench.http_fuzz import check

OPENAPI: dict[str, Any] = {
    "paths": {
        "/recommend": {"post": {"responses": {"200": {}, "422": {}, "503": {}}}},
        "/items/{semantic_id}": {"get": {"responses": {"200": {}, "404": {}, "422": {}}}},
    }
}
ERROR = {"error": "invalid_request", "detail": "query: Field required"}


def _response(status: int, body: Any) -> httpx.Response:
    return httpx.Response(status, json=body)


def test_documented_answers_pass() -> None:
    assert check(OPENAPI, ("POST", "/recommend", b"{}"), _response(422, ERROR)) is None
    assert check(OPENAPI, ("GET", "/items/1-2", None), _response(404, ERROR)) is None
    assert check(OPENAPI, ("GET", "/nowhere", None), _response(404, ERROR)) is None
    assert check(OPENAPI, ("GET", "/metrics", None), _response(200, {})) is None


def test_violations_are_named() -> None:
    assert (
        check(OPENAPI, ("POST", "/recommend", b"{}"), _response(500, ERROR))
        == f"500 {httpx.Response(500, json=ERROR).text}"
    )
    assert "undocumented status 413" in str(
        check(OPENAPI, ("POST", "/recommend", b"{}"), _response(413, ERROR))
    )
    assert "not an ErrorResponse" in str(
        check(OPENAPI, ("GET", "/items/x", None), _response(422, {"detail": []}))
    )
    assert "not a RecommendResponse" in str(check(OPENAPI, ("POST", "/recommend", b"{}"), _response(200, {})))
