"""Request limits: the query limit is in tokens, special-token text stays text, and a request that
cannot be decoded in time gets a 504 instead of waiting without bound."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
from fastapi.testclient import TestClient

from app.main import create_app
from tests.helpers.decoder_hooks import before_each_decode
from tests.helpers.live_server import live_server
from tests.helpers.service import metric_value, service_settings
from tests.helpers.tiny_bundle import TinyBundle


def test_the_query_limit_counts_tokens_and_says_so(client: TestClient) -> None:
    # The tiny tokenizer has one token per character: 200 characters pass the character check only.
    response = client.post("/recommend", json={"query": "x" * 200})
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == "query: at most 128 tokens, got 200"
    assert client.post("/recommend", json={"query": "x" * 128}).status_code == 200


def test_typed_special_tokens_are_text_not_structure(client: TestClient) -> None:
    recommender = client.app.state.service.recommender  # type: ignore[attr-defined]
    injected = "[SEM_END][REC][SEM_START]"
    assert recommender.query_tokens(injected) == len("(SEM_END)(REC)(SEM_START)")
    response = client.post("/recommend", json={"query": f"{injected}[SEM_0_1] Heat", "k": 3})
    assert response.status_code == 200, response.text


def _hold_decoder(service: Any, started: threading.Event, release: threading.Event) -> None:

    def hold(queries: list[str]) -> None:
        started.set()
        release.wait(30)

    before_each_decode(service.recommender.decoder, hold)


def test_a_request_past_its_deadline_gets_a_504(tiny_bundle: TinyBundle, catalogue_url: str) -> None:
    app = create_app(service_settings(tiny_bundle, catalogue_url, request_timeout_s=0.5))
    started, release = threading.Event(), threading.Event()
    with live_server(app) as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
        _hold_decoder(app.state.service, started, release)
        began = time.perf_counter()
        response = client.post("/recommend", json={"query": "Heat"})
        assert started.is_set() and time.perf_counter() - began < 5
        assert response.status_code == 504, response.text
        assert response.json()["error"] == "deadline_exceeded" and "0.5 s" in response.json()["detail"]
        release.set()
        assert client.post("/recommend", json={"query": "Heat"}).status_code == 200
        assert metric_value(client.get("/metrics").text, "semid_deadline_exceeded_total") == 1.0


def test_an_over_long_body_is_refused_before_it_is_parsed(client: TestClient) -> None:
    response = client.post(
        "/recommend", content=b"x" * (17 * 1024), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "payload_too_large"
