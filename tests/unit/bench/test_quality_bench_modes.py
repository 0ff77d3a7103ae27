"""The quality benchmark over a tiny bundle: the three modes beside BM25, per category, and its summary;
hybrid with the dense source when the bundle has item vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.inference import model_loading
from bench.quality_bench import MODES, SUMMARY_METRICS, QualityBenchConfig, run_bench, summary
from bench.unseen_queries import flat, relevant_items
from semantic_ids.bundle import FusionParams
from tests.helpers.tiny_bundle import TinyBundle, make_tiny_bundle
from tests.helpers.tiny_encoder import HashingEncoder

QUERIES: list[tuple[str, str, dict[str, Any]]] = [
    ("title", "Alien", {"title": "Alien"}),
    ("title", "Heat", {"title": "Heat"}),
    ("director", "a film by Michael Mann", {"director": "Michael Mann"}),
    ("director", "Akira Kurosawa films", {"director": "Akira Kurosawa"}),
]


def _config(bundle: TinyBundle, tmp_path: Path, systems: tuple[str, ...]) -> QualityBenchConfig:
    items = [flat(item) for item in bundle.items]
    rows = [
        {
            "qid": f"q{i}",
            "category": c,
            "lang": "en",
            "query": q,
            "filter": f,
            "relevant": relevant_items(items, f),
        }
        for i, (c, q, f) in enumerate(QUERIES)
    ]
    queries_file = tmp_path / "queries.jsonl"
    queries_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return QualityBenchConfig(
        bundle_dir=bundle.bundle_dir,
        run_dir=tmp_path,
        queries_file=queries_file,
        systems=systems,
        base_models_dir=bundle.base_models_dir,
        out=tmp_path / "out.json",
        beams=4,
        device="cpu",
    )


def test_modes_and_bm25_on_the_same_queries(tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path, steps=30)
    config = _config(bundle, tmp_path, systems=(*MODES, "bm25"))
    result = summary(run_bench(config))
    systems = result["systems"]
    assert set(systems) == {*MODES, "bm25", "random"}
    for name in (*MODES, "bm25"):
        assert set(systems[name]["by_category"]) == {"title", "director"}
        assert set(systems[name]["all"]) == set(SUMMARY_METRICS)
        assert systems[name]["latency"]["p50_ms"] > 0
    assert systems["lexical"]["all"]["hit@10"] == 1.0 == systems["bm25"]["all"]["hit@10"]
    assert systems["hybrid"]["by_category"]["title"]["ndcg@10"] == 1.0  # a verbatim title ranks first
    assert systems["hybrid"]["fusion"]["method"] in ("linear", "rrf")
    assert systems["hybrid"]["fusion_latency"]["p50_ms"] > 0


def test_hybrid_reports_its_dense_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bundle with item vectors, tuned to use them: hybrid runs with three sources, and says so."""
    fusion = FusionParams(dense_depth=5, dense_weight=8.0)
    bundle = make_tiny_bundle(tmp_path, steps=30, dense=True, fusion=fusion)
    monkeypatch.setattr(model_loading, "encoder_for", lambda model, device: HashingEncoder())
    config = _config(bundle, tmp_path, systems=("hybrid",))
    full = run_bench(config)
    hybrid = summary(full)["systems"]["hybrid"]
    assert hybrid["dense_source"] is True and hybrid["dense_latency"]["p50_ms"] > 0
    assert hybrid["fusion"]["dense_depth"] == 5 and hybrid["fusion"]["dense_weight"] == 8.0
    assert any("dense" in key.split("+") for key in full["systems"]["hybrid"]["sources_in_top10"])
