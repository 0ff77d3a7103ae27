"""Prometheus metrics, in a registry of the app's own (two apps in one process never share counters)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from semantic_ids.bundle import Manifest

# Up to minutes: a p95 under load must not be clamped by the top bucket.
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_DECODE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_UNMATCHED = "<unmatched>"  # one label for every unknown path, so scanners cannot blow up cardinality
# The h11 parser accepts any token as a method; made-up ones share one label.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "semid_http_requests", "HTTP requests served.", ["method", "route", "status"], registry=r
        )
        self.request_latency = Histogram(
            "semid_http_request_seconds",
            "HTTP request latency by route template and status.",
            ["method", "route", "status"],
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self.decode_latency = Histogram(
            "semid_decode_seconds",
            "Wall time of one batched constrained decode.",
            buckets=_DECODE_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "semid_decode_batch_size",
            "Queries decoded together.",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self._add_hybrid_metrics(r)
        self._add_update_metrics(r)
        self.queue_depth = Gauge("semid_queue_depth", "Requests waiting for the decoder.", registry=r)
        self.overloaded = Counter(
            "semid_overloaded", "Requests refused because the queue was full.", registry=r
        )
        self.invalid_decodes = Counter(
            "semid_invalid_decodes",
            "Decoded semantic IDs with no catalogue row (the trie and the database disagree); must stay 0.",
            registry=r,
        )
        self.catalogue_size = Gauge("semid_catalogue_items", "Items in the served catalogue.", registry=r)
        self.bundle = Info("semid_bundle", "The bundle being served.", registry=r)
        self._add_failure_metrics(r)
        self.invalid_decodes.inc(0)  # exported as 0 from the start, not absent
        self.unhandled_errors.inc(0)
        for mode in ("hybrid", "generative", "lexical"):
            self.recommend_modes.labels(mode).inc(0)

    def _add_hybrid_metrics(self, r: CollectorRegistry) -> None:
        """Requests by retrieval mode, and where hybrid mode spends its time outside the model."""
        self.recommend_modes = Counter(
            "semid_recommend_requests", "Recommendation requests by retrieval mode.", ["mode"], registry=r
        )
        self.fusion_latency = Histogram(
            "semid_fusion_seconds",
            "Wall time of hybrid mode outside the model for one batch: lexical and dense retrieval, the "
            "candidate union and the fused ranking (the candidates' teacher-forced scores come from the "
            "beam search's own forwards).",
            buckets=_DECODE_BUCKETS,
            registry=r,
        )
        self.dense_latency = Histogram(
            "semid_dense_seconds",
            "Wall time of hybrid mode's dense retrieval for one batch: query embedding and similarities.",
            buckets=_DECODE_BUCKETS,
            registry=r,
        )

    def _add_failure_metrics(self, r: CollectorRegistry) -> None:
        """How requests failed: split batches, deadlines, and the catch-all 500s."""
        self.batch_splits = Counter(
            "semid_decode_batch_splits",
            "Batches whose decode failed and were decoded again one request at a time.",
            registry=r,
        )
        self.deadline_exceeded = Counter(
            "semid_deadline_exceeded", "Requests answered 504: not decoded within the deadline.", registry=r
        )
        self.unhandled_errors = Counter(
            "semid_unhandled_errors", "Requests answered 500 by the catch-all error handler.", registry=r
        )

    def _add_update_metrics(self, r: CollectorRegistry) -> None:
        self.catalogue_changes = Counter(
            "semid_catalogue_changes",
            "Items added, updated or deleted while serving.",
            ["action"],
            registry=r,
        )
        self.catalogue_change_latency = Histogram(
            "semid_catalogue_change_seconds",
            "Time to apply one change set: embed, assign IDs, rebuild the trie and indexes, write the "
            "overlay and the database.",
            buckets=(0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
            registry=r,
        )
        self.overlay_items = Gauge(
            "semid_overlay_items",
            "Items the overlay adds, changes or deletes against the bundle.",
            registry=r,
        )
        self.overlay_bytes = Gauge("semid_overlay_bytes", "Bytes of the overlay on disk.", registry=r)

    def describe_bundle(self, manifest: Manifest, item_count: int) -> None:
        self.catalogue_size.set(item_count)
        self.bundle.info(
            {
                "bundle_id": manifest.bundle_id,
                "catalogue_hash": manifest.catalogue.content_hash[:12],
                "profile": manifest.catalogue.profile,
                "base_model": manifest.base_model.name,
                "codebook_sizes": "x".join(str(size) for size in manifest.semantic_ids.codebook_sizes),
            }
        )


def route_template(scope: Scope) -> str:
    """The matched route's path template (set by Starlette's router), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    # A mount (the page's and the docs' static files) sets root_path to its prefix: one label per mount,
    # whatever file is asked for.
    root, app_root = str(scope.get("root_path", "")), scope.get("app_root_path")
    if isinstance(app_root, str) and root.startswith(app_root) and root != app_root:
        return f"{root[len(app_root) :]}/{{path}}"
    # Plain Starlette routes (/docs, /openapi.json) set only the endpoint; with no path parameters their
    # raw path is their template.
    if scope.get("endpoint") is not None and not scope.get("path_params"):
        return str(scope["path"])
    return _UNMATCHED


def method_label(method: str) -> str:
    return method if method in _METHODS else "other"


class MetricsMiddleware:
    """Counts and times every HTTP request under its route template (``/items/{semantic_id}``)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app raises before it answers

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            labels = (method_label(scope["method"]), route_template(scope), str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.request_latency.labels(*labels).observe(time.perf_counter() - started)
