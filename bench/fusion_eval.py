"""Fusion tuning's one model pass and its offline evaluation (``bench.tune_fusion`` runs them).

``collect`` runs the model once per held-out query at the widest depths any setting of the grid uses:
the beams, the lexical top ``MAX_DEPTH`` and the dense top ``MAX_DENSE_DEPTH``, all teacher-forced in
the same search. ``evaluate`` then narrows those candidates to one setting's depths and fuses them,
with no model, so a grid of a thousand settings costs seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from semantic_ids.bundle import FusionParams
from semantic_ids.fusion import MODEL, Candidates, fuse
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
    target: int  # catalogue row of the relevant item
    target_lexical_rank: int  # its 0-based rank in the lexical ranking (lexical mode alone)
    dense_rank: np.ndarray | None = None  # (candidates,) the same in the dense ranking; None: no dense
    target_dense_rank: int | None = None


def _batches(pairs: Sequence[tuple[str, int]], size: int) -> Iterator[Sequence[tuple[str, int]]]:
    for start in range(0, len(pairs), size):
        yield pairs[start : start + size]


def _rank_of(scores: np.ndarray) -> np.ndarray:
    """(items,) scores -> (items,) 0-based rank of each row, best first, ties in catalogue order."""
    order = np.argsort(-scores, kind="stable")
    rank_of = np.empty(len(order), dtype=np.int64)
    rank_of[order] = np.arange(len(order))
    return rank_of


def collect(
    ranker: HybridRanker, pairs: Sequence[tuple[str, int]], *, beams: int, batch: int
) -> list[Scored]:
    """One model pass: beams and teacher-forced scores of every candidate up to the widest depths."""
    dense_depth = MAX_DENSE_DEPTH if ranker.dense is not None else 0
    out: list[Scored] = []
    for done, chunk in enumerate(_batches(pairs, batch)):
        queries = [query for query, _ in chunk]
        gathered = ranker.gather(
            queries, TOP_K, num_beams=beams, lexical_depth=MAX_DEPTH, dense_depth=dense_depth
        )
        dense = ranker.dense.scores(queries) if ranker.dense is not None else None  # (queries, items)
        for index, ((query, target), candidates) in enumerate(zip(chunk, gathered, strict=True)):
            rows = np.asarray(candidates.rows)
            is_beam = np.asarray([MODEL in sources for sources in candidates.sources])
            lexical_rank = _rank_of(ranker.lexical.scores(query).combined)
            dense_rank = None if dense is None else _rank_of(dense[index])
            out.append(
                Scored(
                    candidates, is_beam, lexical_rank[rows], target, int(lexical_rank[target]),
                    None if dense_rank is None else dense_rank[rows],
                    None if dense_rank is None else int(dense_rank[target]),
                )
            )  # fmt: skip
        logger.info("scored %d / %d queries", min((done + 1) * batch, len(pairs)), len(pairs))
    return out


def _narrowed(scored: Scored, params: FusionParams) -> Candidates:
    """The candidates ``params``' depths would have given: beams, and lexical and dense finds within them."""
    c = scored.candidates
    keep = scored.is_beam | ((scored.lexical_rank < params.lexical_depth) & (c.lexical > 0.0))
    if scored.dense_rank is not None and c.dense is not None:
        keep |= (scored.dense_rank < params.dense_depth) & (c.dense > 0.0)
    return c.subset(np.flatnonzero(keep))


def evaluate(collected: Sequence[Scored], params: FusionParams) -> dict[str, float]:
    """Recall@10 (= Hit@10: one relevant item) and MRR@10 of one setting."""
    hits, reciprocal = 0, 0.0
    for scored in collected:
        candidates = _narrowed(scored, params)
        order = np.argsort(-fuse(candidates, params), kind="stable")[:TOP_K]
        top = [candidates.rows[i] for i in order]
        if scored.target in top:
            hits += 1
            reciprocal += 1.0 / (top.index(scored.target) + 1)
    n = max(1, len(collected))
    return {"recall@10": round(hits / n, 4), "mrr@10": round(reciprocal / n, 4)}


MODEL_ONLY = FusionParams(method="linear", lexical_depth=0, lexical_weight=0.0)


def _alone(ranks: Sequence[int]) -> dict[str, float]:
    """Recall@10 and MRR@10 of a retriever alone, from the target's 0-based rank in its ranking."""
    n = max(1, len(ranks))
    hits = sum(int(rank < TOP_K) for rank in ranks)
    reciprocal = sum(1.0 / (rank + 1) for rank in ranks if rank < TOP_K)
    return {"recall@10": round(hits / n, 4), "mrr@10": round(reciprocal / n, 4)}


def baselines(collected: Sequence[Scored]) -> dict[str, dict[str, float]]:
    """The model alone (beams by probability), the lexical retriever alone and, when there is one, the
    dense retriever alone, on the same queries."""
    figures = {
        "generative": evaluate(collected, MODEL_ONLY),
        "lexical": _alone([s.target_lexical_rank for s in collected]),
    }
    dense = [s.target_dense_rank for s in collected if s.target_dense_rank is not None]
    if collected and len(dense) == len(collected):
        figures["dense"] = _alone(dense)
    return figures
