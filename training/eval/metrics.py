"""Ranking metrics over ranked item-id lists, shared by the model evaluation and the baselines.

Each query has one source item (the item it was generated from); Recall@k is then the hit rate of
that item in the top k, NDCG@10 uses its rank (one relevant item, so the ideal DCG is 1), MRR is 1/rank
within the returned list. ``any_match@10`` counts a hit when any item that satisfies all the query's
attribute constraints is in the top 10 (the lenient view of ambiguous queries).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

KS = (1, 5, 10)


def ranking_metrics(
    ranked: Sequence[Sequence[str]], sources: Sequence[str], matching: Sequence[Sequence[str]] | None = None
) -> dict[str, float]:
    if len(ranked) != len(sources) or not sources:
        raise ValueError(f"{len(ranked)} rankings for {len(sources)} queries")
    totals = {f"recall@{k}": 0.0 for k in KS} | {"ndcg@10": 0.0, "mrr": 0.0}
    any_hits = 0.0
    for index, (items, source) in enumerate(zip(ranked, sources, strict=True)):
        rank = list(items).index(source) + 1 if source in items else None
        for k in KS:
            totals[f"recall@{k}"] += float(rank is not None and rank <= k)
        if rank is not None:
            totals["mrr"] += 1.0 / rank
            totals["ndcg@10"] += 1.0 / math.log2(rank + 1) if rank <= 10 else 0.0
        if matching is not None:
            any_hits += float(bool(set(items[:10]) & set(matching[index])))
    metrics = {name: value / len(sources) for name, value in totals.items()}
    if matching is not None:
        metrics["any_match@10"] = any_hits / len(sources)
    return {name: round(value, 4) for name, value in metrics.items()}
