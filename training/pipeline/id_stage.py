"""The ID half of the pipeline: catalogue -> embeddings -> RQ-VAE -> unique semantic IDs.

One function per step (each writes its output and its JSON report into the run folder and returns
the report), and ``build_ids`` that runs them all in one process, as ``semid ids`` and the whole
pipeline do.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semantic_ids.rqvae import RQVAEError, load_rqvae, save_rqvae
from training.data.catalogue import CatalogueError, read_catalogue
from training.data.embeddings import embed_texts
from training.data.item_text import render_item_text
from training.data.items import CatalogueItem
from training.ids.assign import assign_ids, write_id_outputs
from training.ids.train_rqvae import train_rqvae
from training.io import write_json
from training.pipeline.timing import timed
from training.profiles import PROFILES, load_profile, rqvae_config
from training.run_layout import RunLayout

EMBED_BATCH = 64


def read_items(profile: str, jsonl: Path | None) -> list[CatalogueItem]:
    """A JSONL catalogue when given, else the profile's films."""
    if jsonl is not None:
        return read_catalogue(jsonl)
    if profile not in PROFILES:
        raise CatalogueError(f"unknown profile {profile!r}: use demo or full, or give --jsonl FILE")
    return load_profile(profile)


def _save_catalogue(
    layout: RunLayout, profile: str, jsonl: Path | None, items: Sequence[CatalogueItem], out: Path
) -> dict[str, Any]:
    """The catalogue and the import report beside it, which says where the catalogue came from (the
    query templates of a film catalogue are not those of another)."""
    layout.save_catalogue(list(items), out)
    source = str(jsonl) if jsonl else f"bokeh-sampledata movies.db ({profile})"
    report = {
        "source": source,
        "catalogue": "jsonl" if jsonl else "films",
        "item_count": len(items),
        "out": str(out),
    }
    write_json(report, RunLayout(out.parent).report("import"))
    return report


def import_catalogue(
    layout: RunLayout, profile: str, jsonl: Path | None, out: Path | None = None
) -> dict[str, Any]:
    return _save_catalogue(layout, profile, jsonl, read_items(profile, jsonl), out or layout.catalogue)


def _embed(items: list[CatalogueItem], cache_dir: Path, batch_size: int) -> tuple[np.ndarray, dict[str, Any]]:
    started = time.perf_counter()
    embeddings, counts = embed_texts(
        [render_item_text(item) for item in items], cache_dir=cache_dir, batch_size=batch_size
    )
    return embeddings, {**counts, "seconds": round(time.perf_counter() - started, 2)}


def embed(layout: RunLayout, cache_dir: Path, batch_size: int = EMBED_BATCH) -> dict[str, Any]:
    """Embed the run's catalogue with MiniLM (cached by content)."""
    embeddings, report = _embed(layout.load_catalogue(), cache_dir, batch_size)
    layout.save_embeddings(embeddings)
    report = {**report, "out": str(layout.embeddings)}
    write_json(report, layout.report("embed"))
    return report


def train_ids_model(layout: RunLayout, profile: str, **overrides: Any) -> dict[str, Any]:
    """Train the RQ-VAE on the run's embeddings; ``overrides`` (None keeps) go to its config."""
    embeddings = layout.load_embeddings()
    config = rqvae_config(profile, len(embeddings), **{k: v for k, v in overrides.items() if v is not None})
    started = time.perf_counter()
    model, history = train_rqvae(embeddings, config)
    save_rqvae(model, config, layout.rqvae)
    report = {
        "config": config.to_json(),
        "seconds": round(time.perf_counter() - started, 2),
        "epochs": history,
    }
    write_json(report, layout.rqvae_training)
    return report


def assign(layout: RunLayout) -> dict[str, Any]:
    """Unique semantic IDs from the run's trained RQ-VAE; writes the ID outputs."""
    items = layout.load_catalogue()
    embeddings = layout.load_embeddings()
    if len(embeddings) != len(items):
        raise RQVAEError(
            f"{layout.embeddings}: {len(embeddings)} embedding rows for {len(items)} catalogue items; "
            "re-run `semid embed`"
        )
    model, config = load_rqvae(layout.rqvae)
    assignment = assign_ids(items, embeddings, model, config)
    write_id_outputs(layout, items, embeddings, model, config, assignment)
    return assignment.report


def build_ids(
    layout: RunLayout,
    profile: str,
    *,
    jsonl: Path | None,
    cache_dir: Path,
    seed: int | None = None,
    read: Sequence[CatalogueItem] | None = None,
) -> dict[str, Any]:
    """Every ID step in one process; writes the ID outputs and the ID report (with step timings).
    ``read``: the catalogue when the caller has read it already (from ``jsonl``, or the profile's)."""
    timings: dict[str, float] = {}
    started = time.perf_counter()

    def import_items() -> list[CatalogueItem]:
        catalogue = list(read) if read is not None else read_items(profile, jsonl)
        _save_catalogue(layout, profile, jsonl, catalogue, layout.catalogue)
        return catalogue

    items = timed(timings, "import", import_items, digits=2)
    embeddings, embed_report = _embed(items, cache_dir, EMBED_BATCH)
    timings["embed"] = embed_report["seconds"]
    config = rqvae_config(profile, len(items), **({} if seed is None else {"seed": seed}))
    model, history = timed(timings, "train_rqvae", lambda: train_rqvae(embeddings, config), digits=2)

    def assign_and_write() -> dict[str, Any]:
        assignment = assign_ids(items, embeddings, model, config)
        write_json({"config": config.to_json(), "epochs": history}, layout.rqvae_training)
        write_id_outputs(layout, items, embeddings, model, config, assignment)
        return assignment.report

    id_report = timed(timings, "assign", assign_and_write, digits=2)
    timings["total"] = round(time.perf_counter() - started, 2)
    report = {**id_report, "profile": profile, "embedding_cache": embed_report, "timings_s": timings}
    report["rqvae_final_epoch"] = history[-1] if history else None
    write_json(report, layout.id_report)
    return report
