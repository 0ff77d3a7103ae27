"""Fusion tuning's one model pass and its offline evaluation (``bench.tune_fusion`` runs them).

``collect`` runs the model once per held-out query at the widest depths any setting of the grid uses:
the beams, the lexical top ``MAX_DEPTH`` and the dense top ``MAX_DENSE_DEPTH``, all teacher-forced in
the same search. ``evaluate`` then narrows those candidates to one setting's depths and fuses them,
with no model, so a grid of a thousand settings costs seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from semantic_ids.bundle import FusionParams
from semantic_ids.fusion import DECISIVE_DEPTH_PER_K, MODEL, Candidates, rank
from semantic_ids.hybrid import HybridRanker

logger = logging.getLogger("bench.tune_fusion")

TOP_K = 10
MAX_DEPTH = 50
MAX_DENSE_DEPTH = 10


@dataclass(frozen=True)
class Scored:
    """One query's candidates at the widest depth, with what is needed to narrow them."""

    candidates: Candidates
    is_beam: np.ndarray  # (candidates,) bool
    lexical_rank: np.ndarray  # (candidates,) 0-based rank of each candidate in the lexical ranking
    relevant: tuple[int, ...]  # catalogue rows of the relevant items (one, but for a category query)
    lexical_top: tuple[int, ...]  # the lexical retriever's own top ``TOP_K`` rows (lexical mode alone)
    dense_rank: np.ndarray | None = None  # (candidates,) the same in the dense ranking; None: no dense
    dense_top: tuple[int, ...] | None = None


Pair = tuple[str, int | tuple[int, ...]]  # a query and its relevant row, or rows


def _batches(pairs: Sequence[Pair], size: int) -> Iterator[Sequence[Pair]]:
    for start in range(0, len(pairs), size):
        yield pairs[start : start + size]


def _rank_of(scores: np.ndarray) -> np.ndarray:
    """(items,) scores -> (items,) 0-based rank of each row, best first, ties in catalogue order."""
    order = np.argsort(-scores, kind="stable")
    rank_of = np.empty(len(order), dtype=np.int64)
    rank_of[order] = np.arange(len(order))
    return rank_of


def collect(ranker: HybridRanker, pairs: Sequence[Pair], *, beams: int, batch: int) -> list[Scored]:
    """One model pass: beams and teacher-forced scores of every candidate up to the widest depths."""
    dense_depth = MAX_DENSE_DEPTH if ranker.dense is not None else 0
    out: list[Scored] = []
    for done, chunk in enumerate(_batches(pairs, batch)):
        queries = [query for query, _ in chunk]
        gathered = ranker.gather(
            queries, TOP_K, num_beams=beams, lexical_depth=MAX_DEPTH, dense_depth=dense_depth
        )
        dense = ranker.dense.scores(queries) if ranker.dense is not None else None  # (queries, items)
        for index, ((query, relevant), candidates) in enumerate(zip(chunk, gathered, strict=True)):
            rows = np.asarray(candidates.rows)
            is_beam = np.asarray([MODEL in sources for sources in candidates.sources])
            lexical_rank = _rank_of(ranker.lexical.scores(query).ranking)  # as the service ranks
            dense_rank = None if dense is None else _rank_of(dense[index])
            out.append(
                Scored(
                    candidates, is_beam, lexical_rank[rows],
                    (relevant,) if isinstance(relevant, int) else tuple(relevant), _top(lexical_rank),
                    None if dense_rank is None else dense_rank[rows],
                    None if dense_rank is None else _top(dense_rank),
                )
            )  # fmt: skip
        logger.info("scored %d / %d queries", min((done + 1) * batch, len(pairs)), len(pairs))
    return out


def narrowed(scored: Scored, params: FusionParams) -> Candidates:
    """The candidates ``params``' depths would have given: beams, and lexical and dense finds within them."""
    c = scored.candidates
    keep = scored.is_beam | ((scored.lexical_rank < params.lexical_depth) & (c.lexical > 0.0))
    if params.decisive_evidence is not None and c.decisive is not None:
        # The decisive matches the service adds (``HybridRanker._decisive_rows``): the best-ranked ones.
        decisive = np.flatnonzero(c.decisive >= params.decisive_evidence)
        best = decisive[np.argsort(scored.lexical_rank[decisive], kind="stable")]
        keep[best[: DECISIVE_DEPTH_PER_K * TOP_K]] = True
    if scored.dense_rank is not None and c.dense is not None:
        keep |= (scored.dense_rank < params.dense_depth) & (c.dense > 0.0)
    return c.subset(np.flatnonzero(keep))


def _top(rank_of: np.ndarray) -> tuple[int, ...]:
    """The rows ranked in the top ``TOP_K``, best first, from each row's 0-based rank."""
    return tuple(int(row) for row in np.argsort(rank_of, kind="stable")[:TOP_K])


def _recall_and_rank(top: Sequence[int], relevant: tuple[int, ...]) -> tuple[float, float]:
    """Recall@10 (|relevant ∩ top 10| / min(10, |relevant|): Hit@10 for one relevant item) and the
    reciprocal rank of the first relevant row (0 when none is in the top 10)."""
    wanted = set(relevant)
    hits = [rank for rank, row in enumerate(top[:TOP_K]) if row in wanted]
    return len(hits) / max(1, min(TOP_K, len(wanted))), 1.0 / (hits[0] + 1) if hits else 0.0


def _measure(tops: Iterable[tuple[Sequence[int], tuple[int, ...]]]) -> dict[str, float]:
    """Recall@10 and MRR@10 over (top rows, relevant rows) pairs."""
    pairs = [_recall_and_rank(top, relevant) for top, relevant in tops]
    n = max(1, len(pairs))
    recall, reciprocal = sum(r for r, _ in pairs), sum(rr for _, rr in pairs)
    return {"recall@10": round(recall / n, 4), "mrr@10": round(reciprocal / n, 4)}


def _fused_top(scored: Scored, params: FusionParams) -> list[int]:
    candidates = narrowed(scored, params)
    order, _ = rank(candidates, params)  # the service's order: attribute and decisive tiers first
    order = order[:TOP_K]
    return [candidates.rows[i] for i in order]


def evaluate(collected: Sequence[Scored], params: FusionParams) -> dict[str, float]:
    """Recall@10 and MRR@10 of one setting."""
    return _measure((_fused_top(scored, params), scored.relevant) for scored in collected)


def per_query_recall(collected: Sequence[Scored], params: FusionParams) -> list[float]:
    """Each query's Recall@10 under one setting."""
    return [_recall_and_rank(_fused_top(scored, params), scored.relevant)[0] for scored in collected]


MODEL_ONLY = FusionParams(method="linear", lexical_depth=0, lexical_weight=0.0)


def baselines(collected: Sequence[Scored]) -> dict[str, dict[str, float]]:
    """The model alone (beams by probability), the lexical retriever alone and, when there is one, the
    dense retriever alone, on the same queries."""
    figures = {
        "generative": evaluate(collected, MODEL_ONLY),
        "lexical": _measure((s.lexical_top, s.relevant) for s in collected),
    }
    if collected and all(s.dense_top is not None for s in collected):
        figures["dense"] = _measure((s.dense_top or (), s.relevant) for s in collected)
    return figures
