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


def ambiguity_metrics(
    ranked: Sequence[Sequence[str]], sources: Sequence[str], matching: Sequence[Sequence[str]], k: int = 10
) -> dict[str, float]:
    """What ambiguous queries let Recall@k be. A query made from one item but fitting ``m`` items (every
    facet it names fits them all) has that item in an ideal top ``k`` with chance ``min(1, k / m)`` at
    best, for nothing in the query tells the ``m`` apart: ``oracle_recall@k`` is the mean of that, the
    ceiling of any system's Recall@k on these queries (a generous one where the lists are capped, as
    ``MATCH_CAP`` caps them). ``specific_recall@k`` is Recall@k over the
    ``specific_queries``, those that fit at most ``k`` items, where the ceiling is 1."""
    if not (len(ranked) == len(sources) == len(matching)) or not sources:
        raise ValueError(f"{len(ranked)} rankings, {len(sources)} sources, {len(matching)} matching lists")
    oracle = sum(min(1.0, k / max(1, len(m))) for m in matching) / len(sources)
    specific = [i for i, m in enumerate(matching) if len(m) <= k]
    hits = sum(int(sources[i] in list(ranked[i])[:k]) for i in specific)
    return {
        f"oracle_recall@{k}": round(oracle, 4),
        "specific_queries": len(specific),
        f"specific_recall@{k}": round(hits / len(specific), 4) if specific else float("nan"),
    }
