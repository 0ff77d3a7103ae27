"""The quality benchmark over a tiny bundle: the three modes beside BM25, per category, and its summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.quality_bench import MODES, SUMMARY_METRICS, QualityBenchConfig, run_bench, summary
from bench.unseen_queries import flat, relevant_items
from tests.helpers.tiny_bundle import make_tiny_bundle

QUERIES: list[tuple[str, str, dict[str, Any]]] = [
    ("title", "Alien", {"title": "Alien"}),
    ("title", "Heat", {"title": "Heat"}),
    ("director", "a film by Michael Mann", {"director": "Michael Mann"}),
    ("director", "Akira Kurosawa films", {"director": "Akira Kurosawa"}),
]


def test_modes_and_bm25_on_the_same_queries(tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path, steps=30)
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
    config = QualityBenchConfig(
        bundle_dir=bundle.bundle_dir,
        run_dir=tmp_path,
        queries_file=queries_file,
        systems=(*MODES, "bm25"),
        base_models_dir=bundle.base_models_dir,
        out=tmp_path / "out.json",
        beams=4,
        device="cpu",
    )
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
