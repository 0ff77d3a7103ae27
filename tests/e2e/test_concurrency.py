"""Concurrency through a real uvicorn server: the loop stays free while a decode runs, a bounded load
gives no error but the documented 503, and a full queue refuses with Retry-After."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.service import Service
from tests.helpers.decoder_hooks import before_each_decode
from tests.helpers.live_server import live_server
from tests.helpers.service import catalogue_ids, metric_value, service_settings
from tests.helpers.tiny_bundle import TinyBundle


class DecodeGate:
    """Holds the service's real decoder until released, so a test knows a decode is under way."""

    def __init__(self, service: Service) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

        def gate(queries: list[str]) -> None:
            self.started.set()
            self.release.wait(30)

        before_each_decode(service.recommender.decoder, gate)


@pytest.fixture
def served(
    tiny_bundle: TinyBundle, catalogue_url: str, request: pytest.FixtureRequest
) -> Iterator[tuple[str, Service]]:
    overrides = getattr(request, "param", {})
    app = create_app(service_settings(tiny_bundle, catalogue_url, **overrides))
    with live_server(app) as base_url:
        yield base_url, app.state.service


def test_health_and_items_answer_while_a_decode_runs(
    served: tuple[str, Service], tiny_bundle: TinyBundle
) -> None:
    base_url, service = served
    gate = DecodeGate(service)
    with ThreadPoolExecutor(1) as pool, httpx.Client(base_url=base_url, timeout=10) as client:
        pending = pool.submit(client.post, "/recommend", json={"query": "Heat", "k": 3})
        assert gate.started.wait(10)
        with httpx.Client(base_url=base_url, timeout=2) as other:
            assert other.get("/healthz").status_code == 200
            assert other.get("/readyz").status_code == 200
            assert other.get(f"/items/by-item-id/{tiny_bundle.items[0]['item_id']}").status_code == 200
            assert other.get("/metrics").status_code == 200
        assert not pending.done()  # everything above answered while the decode was held
        gate.release.set()
        assert pending.result(10).status_code == 200


def _one_client_session(base_url: str, requests: list[dict[str, Any]]) -> list[httpx.Response]:
    with httpx.Client(base_url=base_url, timeout=60) as client:  # one keep-alive connection
        return [client.post("/recommend", json=body) for body in requests]


def test_bounded_concurrent_load(served: tuple[str, Service], tiny_bundle: TinyBundle) -> None:
    base_url, _ = served
    rng = random.Random(0)
    titles = [item["title"] for item in tiny_bundle.items]
    bodies = [
        {
            "query": rng.choice([*titles, "a quiet drama", "space horror", "  Elf  "]),
            "k": rng.choice([1, 5, 10, 20, 50]),
        }
        for _ in range(200)
    ]
    with ThreadPoolExecutor(8) as pool:
        batches = pool.map(lambda n: _one_client_session(base_url, bodies[n::8]), range(8))
        responses = [response for batch in batches for response in batch]

    statuses = Counter(response.status_code for response in responses)
    assert len(responses) == 200 and set(statuses) <= {200, 503}, statuses
    assert all(r.headers.get("retry-after") for r in responses if r.status_code == 503)
    assert statuses[200] >= 150, statuses
    known = catalogue_ids(tiny_bundle)
    for response in responses:
        if response.status_code == 200:
            returned = [item["semantic_id"] for item in response.json()["items"]]
            assert returned and set(returned) <= known and len(set(returned)) == len(returned)

    metrics = httpx.get(f"{base_url}/metrics").text
    assert metric_value(metrics, "semid_invalid_decodes_total") == 0.0
    batches_run = metric_value(metrics, "semid_decode_batch_size_count")
    queries_decoded = metric_value(metrics, "semid_decode_batch_size_sum")
    assert queries_decoded / batches_run > 1.5  # requests that arrived together were decoded together
    served_ok = (
        f'semid_http_requests_total{{method="POST",route="/recommend",status="200"}} {float(statuses[200])}'
    )
    assert served_ok in metrics


@pytest.mark.parametrize(
    "served", [{"max_queued": 2, "batch_max_size": 1, "retry_after_s": 7}], indirect=True
)
def test_a_full_queue_answers_503_with_retry_after(served: tuple[str, Service]) -> None:
    base_url, service = served
    gate = DecodeGate(service)
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(httpx.post, f"{base_url}/recommend", json={"query": "Up"}, timeout=30)
        assert gate.started.wait(10)
        rest = [
            pool.submit(httpx.post, f"{base_url}/recommend", json={"query": "Up"}, timeout=30)
            for _ in range(5)
        ]
        refused = [f.result(30) for f in rest if f.done() or _wait_briefly(f)]
        gate.release.set()
        responses = [first.result(30), *(f.result(30) for f in rest)]
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 3, 503: 3}, statuses  # one decoding, two queued, three refused
    for response in (r for r in responses if r.status_code == 503):
        assert response.headers["retry-after"] == "7"
        assert response.json()["error"] == "overloaded"
    assert len(refused) == 3
    metrics = httpx.get(f"{base_url}/metrics").text
    assert metric_value(metrics, "semid_overloaded_total") == 3.0


def _wait_briefly(future: Any) -> bool:
    try:
        future.result(1.0)
    except TimeoutError:
        return False
    return True
