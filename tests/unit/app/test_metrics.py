"""HTTP metrics keep bounded labels: made-up methods share one label, unknown paths share one route,
the docs routes are named, and the latency buckets reach minutes."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import generate_latest

from app.metrics import Metrics, MetricsMiddleware
from app.page import install_page


def _series(metrics: Metrics) -> list[str]:
    text = generate_latest(metrics.registry).decode()
    return [line for line in text.splitlines() if line.startswith("semid_http_requests_total")]


def test_labels_stay_bounded_and_docs_routes_are_named() -> None:
    app = FastAPI()
    metrics = Metrics()
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.get("/things/{thing_id}")
    def thing(thing_id: str) -> str:
        return thing_id

    client = TestClient(app)
    for n in range(50):
        client.request(f"MADEUP{n}", f"/scan/{n}")
        client.get(f"/things/{n}")
    client.get("/docs")
    client.get("/openapi.json")
    series = _series(metrics)
    assert 'semid_http_requests_total{method="other",route="<unmatched>",status="404"} 50.0' in series
    assert 'semid_http_requests_total{method="GET",route="/things/{thing_id}",status="200"} 50.0' in series
    assert 'semid_http_requests_total{method="GET",route="/docs",status="200"} 1.0' in series
    assert 'semid_http_requests_total{method="GET",route="/openapi.json",status="200"} 1.0' in series
    assert len(series) == 4


def test_static_files_share_one_route_label_per_mount() -> None:
    app = FastAPI()
    metrics = Metrics()
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    install_page(app)
    client = TestClient(app)
    client.get("/static/page.js")
    for n in range(20):
        client.get(f"/static/scan{n}.js")
    series = _series(metrics)
    assert 'semid_http_requests_total{method="GET",route="/static/{path}",status="200"} 1.0' in series
    assert 'semid_http_requests_total{method="GET",route="/static/{path}",status="404"} 20.0' in series
    assert len(series) == 2


def test_latency_buckets_reach_at_least_a_minute() -> None:
    text = generate_latest(Metrics().registry).decode()
    assert 'semid_decode_seconds_bucket{le="60.0"}' in text
    app = FastAPI()
    metrics = Metrics()
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    TestClient(app).get("/nowhere")
    assert (
        'le="60.0"'
        in generate_latest(metrics.registry).decode().split("semid_http_request_seconds_bucket", 1)[1]
    )
