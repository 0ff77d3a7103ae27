"""The three retrieval modes over one bundle: the model alone, the lexical retriever alone, and both fused.

``hybrid``: the candidates are the model's constrained beams ∪ the lexical retriever's top
``lexical_depth`` items. Each candidate is scored by the model's teacher-forced probability of its ID
(``ConstrainedDecoder.score_ids``: one batched forward for all candidates, sharing the prompt), so a
lexical find the beams missed still gets the model's opinion, and by its lexical score. The two are
fused by ``FusionParams.method``:

- ``linear``: ``log p_model(ID | query) + lexical_weight * lexical`` (lexical in [0, 1]): the model's
  ranking with a bonus for lexical evidence, in the model's own units;
- ``rrf``: reciprocal-rank fusion over the candidates, ``1 / (rrf_k + model rank) + 1 / (rrf_k +
  lexical rank)``: blind to the scales, only the orders count.

Which one a bundle uses, and its parameters, are chosen on held-out training phrasings
(``bench/tune_fusion.py``) and kept in the manifest. Every mode returns exactly ``min(k, catalogue
size)`` distinct catalogue items: when the candidates fall short, further lexical rows fill the list.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from semantic_ids.bundle import FusionParams
from semantic_ids.decoding import Candidate, ConstrainedDecoder
from semantic_ids.ids import SemanticId
from semantic_ids.lexical import LexicalIndex

Mode = Literal["hybrid", "generative", "lexical"]
MODES: tuple[str, ...] = get_args(Mode)
MODEL, LEXICAL = "model", "lexical"  # the sources an item can be found by
_FLOOR = -1e9  # stands in for a -inf log-probability, so sums and sorts stay finite


@dataclass(frozen=True)
class Recommendation:
    semantic_id: SemanticId
    score: float  # the mode's ranking score: model probability, lexical score, or the fused score
    sources: tuple[str, ...]  # which retrievers put it among their candidates
    model_score: float | None  # probability of the ID under the constrained model (None: not asked)
    lexical_score: float | None  # lexical score in [0, 1] (None: not asked)


@dataclass(frozen=True)
class Candidates:
    """One query's candidate rows with both component scores, before fusion."""

    rows: list[int]
    sources: list[tuple[str, ...]]
    log_probs: np.ndarray  # (candidates,) model log-probabilities
    lexical: np.ndarray  # (candidates,) lexical scores


def fuse(candidates: Candidates, params: FusionParams) -> np.ndarray:
    """(candidates,) fused scores, higher is better."""
    log_probs = np.where(np.isfinite(candidates.log_probs), candidates.log_probs, _FLOOR)
    if params.method == "linear":
        fused: np.ndarray = log_probs + params.lexical_weight * candidates.lexical
        return fused
    model_rank = _ranks(log_probs)
    lexical_rank = _ranks(candidates.lexical)
    rrf: np.ndarray = 1.0 / (params.rrf_k + model_rank) + 1.0 / (params.rrf_k + lexical_rank)
    return rrf


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, best (highest) first; ties broken by position."""
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    return ranks


class HybridRanker:
    """The modes over one decoder and one lexical index whose rows are ``ids`` (catalogue order)."""

    def __init__(
        self,
        decoder: ConstrainedDecoder,
        lexical: LexicalIndex,
        ids: Sequence[SemanticId],
        fusion: FusionParams,
    ) -> None:
        if len(ids) != len(lexical):
            raise ValueError(f"{len(ids)} IDs for a lexical index of {len(lexical)} items")
        self.decoder = decoder
        self.lexical = lexical
        self.ids = list(ids)
        self.row_of = {semantic_id: row for row, semantic_id in enumerate(self.ids)}
        self.fusion = fusion

    def rank(
        self,
        queries: list[str],
        k: int,
        mode: str,
        *,
        num_beams: int,
        on_fusion: Callable[[float], None] | None = None,
    ) -> list[list[Recommendation]]:
        if mode == "generative":
            return self.generative(queries, k, num_beams=num_beams)
        if mode == "lexical":
            return [self.lexical_only(query, k) for query in queries]
        if mode == "hybrid":
            return self.hybrid(queries, k, num_beams=num_beams, on_fusion=on_fusion)
        raise ValueError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")

    def generative(self, queries: list[str], k: int, *, num_beams: int) -> list[list[Recommendation]]:
        found = self.decoder.decode(queries, num_beams=max(num_beams, k), top_k=k)
        return [
            [Recommendation(c.semantic_id, c.score, (MODEL,), c.score, None) for c in row] for row in found
        ]

    def lexical_only(self, query: str, k: int) -> list[Recommendation]:
        scores = self.lexical.scores(query).combined
        rows = _best_rows(scores, k)
        return [
            Recommendation(self.ids[r], float(scores[r]), (LEXICAL,), None, float(scores[r])) for r in rows
        ]

    def hybrid(
        self,
        queries: list[str],
        k: int,
        *,
        num_beams: int,
        on_fusion: Callable[[float], None] | None = None,
    ) -> list[list[Recommendation]]:
        beams = self.decoder.decode(queries, num_beams=max(num_beams, k), top_k=max(num_beams, k))
        started = time.perf_counter()
        gathered = self.candidates(queries, beams, k)
        ranked = [self._ranked(c, k) for c in gathered]
        if on_fusion is not None:
            on_fusion(time.perf_counter() - started)
        return ranked

    def candidates(
        self, queries: list[str], beams: list[list[Candidate]], k: int, depth: int | None = None
    ) -> list[Candidates]:
        """Beams ∪ lexical top ``depth`` (the manifest's by default), scored by both, per query.

        A beam's model score is the one beam search gave it (``score_ids`` would give the same, as a
        test checks); only the lexical finds the beams missed are scored teacher-forced, in one batch:
        on a CPU the cost of that forward grows with the number of candidates it runs.
        """
        depth = self.fusion.lexical_depth if depth is None else depth
        lexical = [self.lexical.scores(query).combined for query in queries]  # each (items,)
        rows, sources, known = [], [], []
        for beam_row, scores in zip(beams, lexical, strict=True):
            beam_rows = [self.row_of[c.semantic_id] for c in beam_row]
            found = _union(beam_rows, _lexical_rows(scores, depth, k), len(self.ids), k)
            rows.append([row for row, _ in found])
            sources.append([source for _, source in found])
            known.append({self.row_of[c.semantic_id]: math.log(c.score) for c in beam_row})
        unknown = [[r for r in row if r not in seen] for row, seen in zip(rows, known, strict=True)]
        scored = self.decoder.score_ids(queries, [[self.ids[r] for r in row] for row in unknown])
        for seen, row, values in zip(known, unknown, scored, strict=True):
            seen.update(zip(row, values, strict=True))
        return [
            Candidates(
                row, source, np.asarray([lp[r] for r in row], dtype=np.float64), s[row].astype(np.float64)
            )
            for row, source, lp, s in zip(rows, sources, known, lexical, strict=True)
        ]

    def _ranked(self, candidates: Candidates, k: int) -> list[Recommendation]:
        fused = fuse(candidates, self.fusion)
        order = np.argsort(-fused, kind="stable")[:k]
        return [
            Recommendation(
                semantic_id=self.ids[candidates.rows[i]],
                score=float(fused[i]),
                sources=candidates.sources[i],
                model_score=math.exp(float(candidates.log_probs[i])),
                lexical_score=float(candidates.lexical[i]),
            )
            for i in order
        ]


def _best_rows(scores: np.ndarray, n: int) -> list[int]:
    """The ``n`` best rows, best first, ties in catalogue order."""
    return [int(row) for row in np.argsort(-scores, kind="stable")[:n]]


def _lexical_rows(scores: np.ndarray, depth: int, k: int) -> tuple[list[int], list[int]]:
    """(rows with lexical evidence among the top ``depth``, further rows in lexical order to fill up to
    ``k`` candidates should the beams and the evidence fall short)."""
    ranked = _best_rows(scores, max(depth, k))
    evidence = [row for row in ranked[:depth] if scores[row] > 0.0]
    chosen = set(evidence)
    return evidence, [row for row in ranked if row not in chosen]


def _union(
    beam_rows: list[int], lexical: tuple[list[int], list[int]], catalogue: int, k: int
) -> list[tuple[int, tuple[str, ...]]]:
    """Beam rows then lexical rows, each once, with the sources that found it."""
    evidence, filler = lexical
    evidence_set = set(evidence)
    found: list[tuple[int, tuple[str, ...]]] = [
        (row, (MODEL, LEXICAL) if row in evidence_set else (MODEL,)) for row in beam_rows
    ]
    seen = set(beam_rows)
    found += [(row, (LEXICAL,)) for row in evidence if row not in seen]
    seen.update(evidence)
    for row in filler:
        if len(found) >= min(k, catalogue):
            break
        if row not in seen:
            found.append((row, (LEXICAL,)))
            seen.add(row)
    return found
