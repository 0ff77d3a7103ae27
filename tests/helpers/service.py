"""Helpers of the service tests: a database holding a tiny bundle's catalogue, the settings to serve
it, and readers of the service's answers."""

from __future__ import annotations

from typing import Any

from app.db import create_db_engine, load_catalogue
from app.db.migrate import upgrade
from app.settings import Settings
from semantic_ids.bundle import read_catalogue
from tests.helpers.tiny_bundle import TinyBundle


def prepare_database(url: str, bundle: TinyBundle, *, version: str | None = None) -> None:
    """Migrate ``url`` and load the bundle's catalogue (stamped ``version``, by default the bundle's hash)."""
    upgrade(url)
    engine = create_db_engine(url)
    try:
        manifest = bundle.manifest
        stamp = version or manifest.catalogue.content_hash
        load_catalogue(engine, read_catalogue(bundle.bundle_dir), stamp, scheme=manifest.semantic_ids.scheme)
    finally:
        engine.dispose()


def service_settings(bundle: TinyBundle, database_url: str, **overrides: Any) -> Settings:
    return Settings(
        bundle_dir=bundle.bundle_dir,
        base_models_dir=bundle.base_models_dir,
        database_url=database_url,
        device="cpu",
        **overrides,
    )


def catalogue_ids(bundle: TinyBundle) -> set[str]:
    return {"-".join(str(code) for code in item["semantic_id"]) for item in bundle.items}


def metric_value(metrics_text: str, name: str) -> float:
    """The value of an unlabelled sample in Prometheus text format."""
    for line in metrics_text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")
