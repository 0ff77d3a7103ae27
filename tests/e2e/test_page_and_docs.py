"""The page at ``/`` and the API docs, served by the service itself with nothing fetched from outside:
every asset a page names is a local URL that answers 200 with the right content type."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin

import pytest
from fastapi.testclient import TestClient

_EXTERNAL = re.compile(r"(https?:)?//", re.IGNORECASE)


class _Assets(HTMLParser):
    """The URLs of the scripts, stylesheets and icons a page loads, and its form controls' labels."""

    def __init__(self) -> None:
        super().__init__()
        self.assets: list[tuple[str, str]] = []  # (tag, url)
        self.labels: set[str] = set()
        self.controls: dict[str, dict[str, str | None]] = {}
        self.options: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "script" and named.get("src"):
            self.assets.append((tag, str(named["src"])))
        if tag == "link" and named.get("href"):
            self.assets.append((tag, str(named["href"])))
        if tag == "label" and named.get("for"):
            self.labels.add(str(named["for"]))
        if tag in ("input", "select") and named.get("id"):
            self.controls[str(named["id"])] = named
        if tag == "option" and named.get("value"):
            self.options.append(str(named["value"]))


def _parse(html: str) -> _Assets:
    parser = _Assets()
    parser.feed(html)
    return parser


def _content_type(url: str) -> str:
    if url.endswith(".js"):
        return "text/javascript"
    if url.endswith(".css"):
        return "text/css"
    return "image/png"


def _assert_local_assets_answer(client: TestClient, page_url: str, html: str) -> int:
    assets = _parse(html).assets
    assert assets, "the page loads no assets at all"
    for _tag, url in assets:
        assert not _EXTERNAL.match(url), f"{page_url} loads {url} from outside"
        response = client.get(urljoin(f"http://testserver{page_url}", url))
        assert response.status_code == 200, url
        assert response.headers["content-type"].startswith(_content_type(url)), (url, response.headers)
        assert len(response.content) > 0
    return len(assets)


def test_the_page_has_a_labelled_form_and_only_local_assets(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "http://" not in html and "https://" not in html
    page = _parse(html)
    assert {"query", "k", "mode"} <= set(page.controls) and {"query", "k", "mode"} <= page.labels
    assert '<form id="search"' in html and 'type="submit"' in html  # Enter in the search box submits
    assert 'name="viewport"' in html
    assert _assert_local_assets_answer(client, "/", html) == 2  # page.css and page.js
    script = client.get("/static/page.js").text
    assert "http://" not in script and "https://" not in script
    assert 'fetch("recommend"' in script and "items/" in script  # the API and the item links, same origin


def test_the_page_offers_exactly_the_apis_modes(client: TestClient) -> None:
    modes = client.get("/openapi.json").json()["components"]["schemas"]["RecommendRequest"]["properties"]
    assert _parse(client.get("/").text).options == modes["mode"]["enum"]


def test_the_page_reads_the_fields_the_api_returns(client: TestClient) -> None:
    """The script's field names are the response's: a renamed field would leave the page blank."""
    script = client.get("/static/page.js").text
    item = client.post("/recommend", json={"query": "Heat", "k": 1}).json()["items"][0]
    for name in ("rank", "title", "semantic_id", "score", "sources", "fields"):
        assert name in item and f"item.{name}" in script
    assert all(f"scores.{name}" in script and name in item["scores"] for name in ("model", "lexical"))
    assert {"year", "genres", "director"} <= set(item["fields"])
    assert '"year", "genres", "director"' in script
    assert "data.timing_ms" in script and "data.mode" in script


@pytest.mark.parametrize("page_url", ["/docs", "/redoc"])
def test_the_api_docs_load_only_local_assets(client: TestClient, page_url: str) -> None:
    response = client.get(page_url)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "http://" not in response.text and "https://" not in response.text
    assert "'/openapi.json'" in response.text or '"/openapi.json"' in response.text
    expected = 3 if page_url == "/docs" else 2  # bundle, css, icon; ReDoc: icon and its standalone script
    assert _assert_local_assets_answer(client, page_url, response.text) == expected


def test_the_schema_is_still_served_and_lists_no_page_or_docs_routes(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    paths = set(response.json()["paths"])
    assert "/recommend" in paths and "/items/{semantic_id}" in paths
    assert not paths & {"/", "/docs", "/redoc", "/docs/oauth2-redirect"}


def test_an_empty_query_answers_the_message_the_page_shows(client: TestClient) -> None:
    response = client.post("/recommend", json={"query": "   ", "k": 10, "mode": "hybrid"})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_request" and "query is empty" in body["detail"]
    assert "body.detail" in client.get("/static/page.js").text
