"""Ranking metrics for queries with a *set* of relevant items (binary relevance), and what a random
ranking would score, so figures on broad queries ("something funny": 372 of 1,000 films) can be read.

Definitions, with R the relevant set, the top-k list as returned, and k = 10:

- Recall@k = |R ∩ top k| / min(k, |R|): the capped recall, so a query with 97 relevant films can
  reach 1.0 with ten right answers (plain |R ∩ top k| / |R| could not exceed 10/97).
- Hit@k = 1 when any relevant item is in the top k.
- NDCG@k = DCG / ideal DCG, gains 1 for a relevant item, 1/log2(rank + 1) discount, ideal DCG from
  min(k, |R|) relevant items at the top.
- MRR = 1 / rank of the first relevant item within the top k, 0 when there is none (MRR@k).

The training evaluation (``training.eval.metrics``) scores one source item per query; these metrics are
for the unseen-phrasing benchmark, where relevance comes from a filter over the catalogue.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence

METRICS = ("recall@10", "hit@10", "ndcg@10", "mrr")


def _discount(rank: int) -> float:
    return 1.0 / math.log2(rank + 1)


def query_metrics(ranked: Sequence[str], relevant: Collection[str], k: int = 10) -> dict[str, float]:
    """The four metrics of one ranked list against one relevant set."""
    if not relevant:
        raise ValueError("a query needs at least one relevant item")
    top = list(ranked[:k])
    hits = [rank for rank, item in enumerate(top, start=1) if item in relevant]
    ideal = sum(_discount(rank) for rank in range(1, min(k, len(relevant)) + 1))
    return {
        f"recall@{k}": len(hits) / min(k, len(relevant)),
        f"hit@{k}": float(bool(hits)),
        f"ndcg@{k}": sum(_discount(rank) for rank in hits) / ideal,
        "mrr": 1.0 / hits[0] if hits else 0.0,
    }


def expected_random(n_items: int, n_relevant: int, k: int = 10) -> dict[str, float]:
    """Expected metrics of a uniformly random ranking of ``n_items`` with ``n_relevant`` relevant ones."""
    if not 0 < n_relevant <= n_items:
        raise ValueError(f"{n_relevant} relevant items out of {n_items}")
    k = min(k, n_items)
    p = n_relevant / n_items  # each rank holds a relevant item with this probability
    ideal = sum(_discount(rank) for rank in range(1, min(k, n_relevant) + 1))
    none_before = 1.0  # P(no relevant item in ranks 1..rank-1), drawing without replacement
    mrr = 0.0
    for rank in range(1, k + 1):
        remaining = n_items - rank + 1
        first_here = none_before * n_relevant / remaining
        mrr += first_here / rank
        none_before *= (remaining - n_relevant) / remaining
    return {
        "recall@10": k * p / min(k, n_relevant),
        "hit@10": 1.0 - none_before,
        "ndcg@10": sum(p * _discount(rank) for rank in range(1, k + 1)) / ideal,
        "mrr": mrr,
    }


def mean_metrics(rows: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Macro average over queries (every query weighs the same), rounded to 4 places."""
    rows = list(rows)
    if not rows:
        return dict.fromkeys(METRICS, float("nan"))
    return {name: round(sum(row[name] for row in rows) / len(rows), 4) for name in METRICS}
