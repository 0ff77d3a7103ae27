"""No request can make another fail: a query the tokenizer cannot encode is refused on its own (422), a
query that breaks the decoder fails alone (a JSON 500 with a request id) while its batch-mates succeed."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from fastapi.testclient import TestClient

from app.main import create_app
from tests.helpers.decoder_hooks import before_each_decode
from tests.helpers.live_server import live_server
from tests.helpers.service import metric_value, service_settings
from tests.helpers.tiny_bundle import TinyBundle


def test_a_lone_surrogate_is_a_422_not_a_500(client: TestClient) -> None:
    for body in (b'{"query": "\\ud800"}', b'{"query": "Heat \\udfff Alien", "k": 3}'):
        response = client.post("/recommend", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "invalid_request"
        assert "lone surrogate" in response.json()["detail"]


def _poison_decoder(service: Any, started: threading.Event, release: threading.Event) -> None:
    """The real decoder, held until ``release``, raising for any batch that holds 'poison'."""

    def poison(queries: list[str]) -> None:
        started.set()
        release.wait(30)
        if any("poison" in query for query in queries):
            raise RuntimeError("the decoder chokes on this query")

    before_each_decode(service.recommender.decoder, poison)


def test_a_poison_query_cannot_fail_its_batch_neighbours(tiny_bundle: TinyBundle, catalogue_url: str) -> None:
    app = create_app(service_settings(tiny_bundle, catalogue_url, batch_max_wait_ms=200.0))
    started, release = threading.Event(), threading.Event()
    with live_server(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as client:
        _poison_decoder(app.state.service, started, release)
        with ThreadPoolExecutor(5) as pool:
            first = pool.submit(client.post, "/recommend", json={"query": "Heat", "k": 3})
            assert started.wait(10)  # the decoder is busy: the next four queue up as one batch
            queries = ["Alien", "poison pill", "Juno", "Coco"]
            pending = [pool.submit(client.post, "/recommend", json={"query": q, "k": 3}) for q in queries]
            threading.Timer(0.5, release.set).start()
            responses = [first.result(), *(future.result() for future in pending)]
        statuses = [response.status_code for response in responses]
        assert statuses == [200, 200, 500, 200, 200], [r.text for r in responses]
        failed = responses[2].json()
        assert failed["error"] == "internal_error" and failed["request_id"] in failed["detail"]
        assert responses[2].headers["x-request-id"] == failed["request_id"]
        assert [r.json()["items"][0]["title"] for r in (responses[3], responses[4])] == ["Juno", "Coco"]
        metrics = client.get("/metrics").text
        assert metric_value(metrics, "semid_unhandled_errors_total") == 1.0
        assert metric_value(metrics, "semid_decode_batch_splits_total") == 1.0
