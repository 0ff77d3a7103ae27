"""Offline evaluation: the fine-tuned model (trie-constrained beam search) against dense and BM25
retrieval, on the very same held-out queries, in one table.

Model-only figures: per-level prefix accuracy of the top ID (how far down the code tree the model
gets it right) and the share of returned IDs that are real catalogue items (must be 1.0).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from semantic_ids.decoding import ConstrainedDecoder
from semantic_ids.ids import SemanticId
from training.data.embeddings import DEFAULT_CACHE_DIR
from training.data.items import CatalogueItem
from training.eval.baselines import bm25_rankings, dense_rankings
from training.eval.metrics import ranking_metrics

logger = logging.getLogger(__name__)

SYSTEMS = ("llm_semantic_id", "dense_minilm", "bm25")


def model_rankings(
    decoder: ConstrainedDecoder,
    queries: Sequence[str],
    item_of: Mapping[SemanticId, str],
    *,
    beams: int = 10,
    top_k: int = 10,
    batch_size: int = 8,
    progress: bool = False,
) -> tuple[list[list[str]], list[list[SemanticId]]]:
    """Ranked item ids and the IDs behind them, per query; IDs that are no catalogue item are dropped."""
    ranked: list[list[str]] = []
    ids: list[list[SemanticId]] = []
    starts = range(0, len(queries), batch_size)
    for start in tqdm(starts, desc="decode", unit="batch", disable=not progress):
        for candidates in decoder.decode(
            list(queries[start : start + batch_size]), num_beams=beams, top_k=top_k
        ):
            ids.append([c.semantic_id for c in candidates])
            ranked.append([item_of[c.semantic_id] for c in candidates if c.semantic_id in item_of])
    return ranked, ids


def model_diagnostics(
    ids: Sequence[Sequence[SemanticId]],
    sources: Sequence[SemanticId],
    item_of: Mapping[SemanticId, str],
    top_k: int,
) -> dict[str, Any]:
    levels = len(sources[0].codes)
    prefix_hits = [0] * levels
    for row, source in zip(ids, sources, strict=True):
        top = row[0].codes if row else ()
        for level in range(levels):
            prefix_hits[level] += int(top[: level + 1] == source.codes[: level + 1])
    returned = [sid for row in ids for sid in row]
    return {
        "prefix_accuracy": [round(h / len(sources), 4) for h in prefix_hits],
        "valid_id_rate": round(sum(sid in item_of for sid in returned) / max(1, len(returned)), 4),
        "full_lists_rate": round(
            sum(len(row) == min(top_k, len(item_of)) for row in ids) / max(1, len(ids)), 4
        ),
        "returned_ids": len(returned),
    }


def evaluate_all(
    decoder: ConstrainedDecoder,
    queries: Sequence[Mapping[str, Any]],
    items: Sequence[CatalogueItem],
    item_embeddings: np.ndarray,
    *,
    beams: int = 10,
    batch_size: int = 8,
    cache_dir: Path | None = None,
    with_rankings: bool = False,
) -> dict[str, Any]:
    """One table: every metric for the three systems on ``queries`` (validation query examples);
    ``with_rankings`` adds each system's ranked item ids (``rankings``)."""
    item_ids = [item.item_id for item in items]
    sid_of = {item.item_id: item.sid for item in items}
    item_of = {sid: item_id for item_id, sid in sid_of.items()}
    texts = [q["query"] for q in queries]
    sources = [q["item_id"] for q in queries]
    matching = [q.get("matching_item_ids", [q["item_id"]]) for q in queries]
    table: dict[str, Any] = {}
    timings: dict[str, float] = {}

    started = time.perf_counter()
    ranked, ids = model_rankings(decoder, texts, item_of, beams=beams, batch_size=batch_size, progress=True)
    timings["llm_semantic_id"] = time.perf_counter() - started
    table["llm_semantic_id"] = ranking_metrics(ranked, sources, matching) | model_diagnostics(
        ids, [sid_of[s] for s in sources], item_of, top_k=10
    )
    started = time.perf_counter()
    dense = dense_rankings(texts, item_ids, item_embeddings, cache_dir=cache_dir or DEFAULT_CACHE_DIR)
    table["dense_minilm"] = ranking_metrics(dense, sources, matching)
    timings["dense_minilm"] = time.perf_counter() - started
    started = time.perf_counter()
    bm25 = bm25_rankings(texts, items)
    table["bm25"] = ranking_metrics(bm25, sources, matching)
    timings["bm25"] = time.perf_counter() - started
    for system, seconds in timings.items():
        table[system]["seconds_per_query"] = round(seconds / len(texts), 4)
    by_template = {
        system: _per_template(rows, queries)
        for system, rows in (("llm_semantic_id", ranked), ("dense_minilm", dense), ("bm25", bm25))
    }
    result = {"queries": len(texts), "beams": beams, "systems": table, "recall@10_by_template": by_template}
    if with_rankings:
        result["rankings"] = {"llm_semantic_id": ranked, "dense_minilm": dense, "bm25": bm25}
    return result


def _per_template(ranked: Sequence[Sequence[str]], queries: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    hits: dict[str, list[int]] = {}
    for row, query in zip(ranked, queries, strict=True):
        hits.setdefault(query["template"], []).append(int(query["item_id"] in row[:10]))
    return {name: round(sum(v) / len(v), 3) for name, v in sorted(hits.items())}


def format_table(result: Mapping[str, Any]) -> str:
    """The evaluation as a Markdown table, one row per system."""
    columns = ["recall@1", "recall@5", "recall@10", "ndcg@10", "mrr", "any_match@10", "seconds_per_query"]
    lines = ["| system | " + " | ".join(columns) + " |", "|" + " --- |" * (len(columns) + 1)]
    for system in SYSTEMS:
        row = result["systems"][system]
        lines.append(f"| {system} | " + " | ".join(f"{row.get(c, float('nan')):.3f}" for c in columns) + " |")
    llm = result["systems"]["llm_semantic_id"]
    lines.append(
        f"\nLLM prefix accuracy per level {llm['prefix_accuracy']}, valid IDs {llm['valid_id_rate']:.3f}, "
        f"full top-10 lists {llm['full_lists_rate']:.3f} "
        f"({result['queries']} held-out queries, {result['beams']} beams)"
    )
    seen = result.get("llm_on_training_phrasings")
    if seen:
        lines.append(
            f"LLM on {seen['queries']} training phrasings (memorisation): recall@1 {seen['recall@1']:.3f}, "
            f"recall@10 {seen['recall@10']:.3f}"
        )
        if "oracle_recall@10" in seen:
            baselines = result.get("baselines_on_training_phrasings", {})
            others = ", ".join(f"{name} {row['recall@10']:.3f}" for name, row in baselines.items())
            lines.append(
                f"  ceiling of any system on them (ambiguous queries) {seen['oracle_recall@10']:.3f}; on the "
                f"{seen['specific_queries']} that fit at most 10 items: {seen['specific_recall@10']:.3f}"
                + (f"; baselines: {others}" if others else "")
            )
    return "\n".join(lines)
