"""The three retrieval modes over one bundle: the model alone, the lexical retriever alone, and both fused.

``hybrid``: the candidates are the model's constrained beams (``FusionParams.model_beam_share`` of
generative's: the finds stand beside them) ∪ the lexical retriever's top
``lexical_depth`` items and its decisive matches (up to ``DECISIVE_DEPTH_PER_K`` × k, best first) ∪,
when the bundle has item vectors and its fusion uses them, the dense retriever's top ``dense_depth``
(``semantic_ids.dense``). Every candidate gets the model's teacher-forced probability of its ID, so a
find the beams missed still gets the model's opinion: the lexical and dense finds are scored inside
the beam search's own forwards (``ConstrainedDecoder.decode_and_score``, one prompt pass for both),
which is why the retrievers run first. A find whose first code the model puts far below the query's
best find's (``FusionParams.estimate_margin``) is scored from that first code and a fixed amount a
later level (``semantic_ids.forced_ids.Estimate``): its rank is its lexical and dense evidence's anyway,
and such finds' rows were a third of hybrid's single-token rows on the demo bundle. The scores are
fused as the bundle's ``FusionParams`` say (``semantic_ids.fusion``; chosen on held-out training
phrasings by ``bench/tune_fusion.py`` and kept in the manifest).

Every mode returns exactly ``min(k, catalogue size)`` distinct catalogue items (``generative`` fewer
when fewer IDs have a non-zero probability): when the candidates fall short, further lexical rows fill
the list.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal, get_args

import numpy as np
import torch

from semantic_ids.bundle import FusionParams
from semantic_ids.decoding import Candidate, ConstrainedDecoder
from semantic_ids.dense import DenseRetriever
from semantic_ids.forced_ids import Estimate
from semantic_ids.fusion import (
    DECISIVE_DEPTH_PER_K,
    DENSE,
    LEXICAL,
    MODEL,
    Candidates,
    best_rows,
    rank,
    union,
)
from semantic_ids.ids import SemanticId
from semantic_ids.lexical import ATTRIBUTE_LEAD, LexicalIndex

__all__ = ["DENSE", "LEXICAL", "MODEL", "MODES", "Candidates", "HybridRanker", "Mode", "Recommendation"]

Mode = Literal["hybrid", "generative", "lexical"]
MODES: tuple[str, ...] = get_args(Mode)


@dataclass(frozen=True)
class Recommendation:
    semantic_id: SemanticId
    score: float  # the mode's ranking score: model probability, lexical score, or the fused score
    sources: tuple[str, ...]  # which retrievers put it among their candidates
    model_score: float | None  # probability of the ID under the constrained model (None: not asked)
    lexical_score: float | None  # lexical score in [0, 1] (None: not asked)
    dense_score: float | None = None  # cosine similarity of query and item vectors (None: not asked)


@dataclass(frozen=True)
class _Retrieved:
    """One query's retriever results, before the model."""

    lexical: np.ndarray  # (items,) lexical evidence (``LexicalScores.evidence``), what fusion weighs
    title: np.ndarray  # (items,) fuzzy title matches, the part of the lexical score fusion weighs again
    satisfied: np.ndarray | None  # (items,) fraction of the query's attributes met; None: it names none
    decisive: np.ndarray  # (items,) share of the query's known words each row holds (``LexicalScores``)
    dense: np.ndarray | None  # (items,) cosine similarities; None: the dense source is off
    found: list[tuple[str, list[int]]]  # (source, its evidence rows, best first)
    filler: list[int]  # lexical rows to fill up with, should the candidates fall short
    # Computes exact cosines of the given rows into ``dense`` (a neighbour index gives only its finds').
    fill_dense: Callable[[Sequence[int]], None] | None = None


@dataclass
class Timings:
    """Where a hybrid batch spent its time (seconds)."""

    model_s: float = 0.0  # beam search with the forced candidates, and any fill-up scoring
    dense_s: float = 0.0  # query embedding and similarities


class HybridRanker:
    """The modes over one decoder and the retrievers whose rows are ``ids`` (catalogue order)."""

    def __init__(
        self,
        decoder: ConstrainedDecoder,
        lexical: LexicalIndex,
        ids: Sequence[SemanticId],
        fusion: FusionParams,
        dense: DenseRetriever | None = None,
    ) -> None:
        if len(ids) != len(lexical) or (dense is not None and len(dense.index) != len(ids)):
            sizes = f"{len(lexical)} lexical" + ("" if dense is None else f", {len(dense.index)} dense")
            raise ValueError(f"{len(ids)} IDs for indexes of {sizes} items")
        self.decoder = decoder
        self.lexical = lexical
        self.dense = dense
        self.ids = list(ids)
        self.row_of = {semantic_id: row for row, semantic_id in enumerate(self.ids)}
        self.fusion = fusion
        self._codes = torch.tensor([semantic_id.codes for semantic_id in self.ids])  # (items, levels)

    def rank(
        self,
        queries: list[str],
        k: int,
        mode: str,
        *,
        num_beams: int,
        on_fusion: Callable[[float], None] | None = None,
        on_dense: Callable[[float], None] | None = None,
    ) -> list[list[Recommendation]]:
        if mode == "generative":
            return self.generative(queries, k, num_beams=num_beams)
        if mode == "lexical":
            return [self.lexical_only(query, k) for query in queries]
        if mode == "hybrid":
            return self.hybrid(queries, k, num_beams=num_beams, on_fusion=on_fusion, on_dense=on_dense)
        raise ValueError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")

    def generative(self, queries: list[str], k: int, *, num_beams: int) -> list[list[Recommendation]]:
        found = self.decoder.decode(queries, num_beams=max(num_beams, k), top_k=k)
        return [
            [Recommendation(c.semantic_id, c.score, (MODEL,), c.score, None) for c in row] for row in found
        ]

    def lexical_only(self, query: str, k: int) -> list[Recommendation]:
        """The lexical ranking: its score is the combined lexical score plus twice the fraction of the
        query's attributes met (``LexicalScores.ranking``); ``lexical_score`` the combined score alone."""
        found = self.lexical.scores(query)
        combined, ranking = found.combined, found.ranking
        rows = best_rows(ranking, k)
        return [
            Recommendation(self.ids[r], float(ranking[r]), (LEXICAL,), None, float(combined[r])) for r in rows
        ]

    def hybrid(
        self,
        queries: list[str],
        k: int,
        *,
        num_beams: int,
        on_fusion: Callable[[float], None] | None = None,
        on_dense: Callable[[float], None] | None = None,
    ) -> list[list[Recommendation]]:
        """Fused rankings; ``on_fusion`` is told the seconds spent outside the model (retrieval, union,
        fusion), ``on_dense`` those of the dense retrieval among them, when it ran."""
        started, timings = time.perf_counter(), Timings()
        ranked = [self._ranked(c, k) for c in self.gather(queries, k, num_beams=num_beams, timings=timings)]
        if on_fusion is not None:
            on_fusion(time.perf_counter() - started - timings.model_s)
        if on_dense is not None and self._dense_on(self.fusion.dense_depth):
            on_dense(timings.dense_s)
        return ranked

    def gather(
        self,
        queries: list[str],
        k: int,
        *,
        num_beams: int,
        lexical_depth: int | None = None,
        dense_depth: int | None = None,
        timings: Timings | None = None,
    ) -> list[Candidates]:
        """Per query: beams ∪ lexical top ``lexical_depth`` ∪ dense top ``dense_depth`` (the manifest's
        by default), each with every component score. A beam keeps the score beam search gave it; the
        finds are scored in the same search (``decode_and_score`` gives the same scores as ``score_ids``,
        as tests check, but for the finds its estimate stands in for); only fill-up rows, when beams and
        finds fall short of ``k``, take a pass of their own."""
        timings = timings or Timings()
        retrieved = self._retrieve(
            queries,
            k,
            self.fusion.lexical_depth if lexical_depth is None else lexical_depth,
            self.fusion.dense_depth if dense_depth is None else dense_depth,
            timings,
        )
        started = time.perf_counter()
        beams, known = self._decode(queries, retrieved, self.model_beams(max(num_beams, k)))
        wanted = min(k, len(self.ids))
        chosen = []
        for beam_row, found in zip(beams, retrieved, strict=True):
            beam_rows = [self.row_of[c.semantic_id] for c in beam_row]
            chosen.append(union(beam_rows, found.found, found.filler, wanted))
        self._score_missing(queries, chosen, known)
        timings.model_s += time.perf_counter() - started
        for rows, found in zip(chosen, retrieved, strict=True):
            if found.fill_dense is not None:
                found.fill_dense([row for row, _ in rows])
        return [_candidates(c, lp, r) for c, lp, r in zip(chosen, known, retrieved, strict=True)]

    def model_beams(self, beams: int) -> int:
        """The beams hybrid's model search keeps where generative keeps ``beams``
        (``FusionParams.model_beam_share``)."""
        return max(1, round(beams * self.fusion.model_beam_share))

    @property
    def _estimate(self) -> Estimate | None:
        """What stands in for the finds far behind on their first code (None: every find runs in full)."""
        margin = self.fusion.estimate_margin
        return None if margin is None else Estimate(margin, self.fusion.estimate_per_level)

    def _dense_on(self, dense_depth: int) -> bool:
        return self.dense is not None and (dense_depth > 0 or self.fusion.dense_weight > 0.0)

    def _retrieve(
        self, queries: list[str], k: int, lexical_depth: int, dense_depth: int, timings: Timings
    ) -> list[_Retrieved]:
        dense: np.ndarray | None = None
        if self.dense is not None and self._dense_on(dense_depth):
            started = time.perf_counter()
            found_dense = self.dense.search(queries)
            dense = found_dense.similarity  # (queries, items)
            timings.dense_s += time.perf_counter() - started
        out = []
        for index, query in enumerate(queries):
            scores = self.lexical.scores(query)
            ranking = scores.ranking  # (items,) the lexical ranking, attributes first
            satisfied = scores.satisfied if scores.constrained else None
            lexical_rows = _rows_with(ranking, scores.found, lexical_depth)
            found = [(LEXICAL, lexical_rows + self._decisive_rows(scores.decisive, ranking, k, lexical_rows))]
            similarity = None if dense is None else dense[index]
            if similarity is not None:
                # The neighbours among the rows meeting the query's attributes, when it names any.
                near = similarity if satisfied is None else similarity + ATTRIBUTE_LEAD * satisfied
                found.append((DENSE, _rows_with(near, similarity > 0.0, dense_depth)))
            filler = best_rows(ranking, max(lexical_depth, k))
            out.append(
                _Retrieved(
                    scores.evidence, scores.title, satisfied, scores.decisive, similarity, found, filler,
                    None if dense is None else partial(found_dense.fill, index),
                )
            )  # fmt: skip
        return out

    def _decisive_rows(
        self, decisive: np.ndarray, ranking: np.ndarray, k: int, already: Sequence[int]
    ) -> list[int]:
        """The decisive lexical matches beyond the lexical top ``lexical_depth``, best first, up to
        ``DECISIVE_DEPTH_PER_K * k`` in all: the decisive tier can only keep the rows that are
        candidates, and an actor in thirty films was cut at the tenth (issue 24: hybrid's Recall@10 on
        lesser-billed actors 0.895 where lexical alone had 0.986)."""
        threshold = self.fusion.decisive_evidence
        if threshold is None:
            return []
        taken = set(already)
        rows = _rows_with(ranking, decisive >= threshold, DECISIVE_DEPTH_PER_K * k)
        return [row for row in rows if row not in taken]

    def _decode(
        self, queries: list[str], retrieved: list[_Retrieved], beams: int
    ) -> tuple[list[list[Candidate]], list[dict[int, float]]]:
        """The beams, and the model's log-probability of every beam and find by catalogue row."""
        forced = [sorted({row for _, rows in r.found for row in rows}) for r in retrieved]
        if not any(forced):
            found = self.decoder.decode(queries, num_beams=beams, top_k=beams)
            known: list[dict[int, float]] = [{} for _ in queries]
        else:
            count = max(len(rows) for rows in forced)
            # Short lists repeat a row: a prefix already run costs nothing again.
            padded = np.asarray([rows + (rows[-1:] or [0]) * (count - len(rows)) for rows in forced])
            codes = self._codes[torch.from_numpy(padded)]  # (queries, count, levels)
            found, scored = self.decoder.decode_and_score(
                queries, codes, num_beams=beams, top_k=beams, estimate=self._estimate
            )
            known = [
                dict(zip(rows, values, strict=False)) for rows, values in zip(forced, scored, strict=True)
            ]
        for row_known, beam_row in zip(known, found, strict=True):
            row_known.update((self.row_of[c.semantic_id], math.log(c.score)) for c in beam_row)
        return found, known

    def _score_missing(
        self,
        queries: list[str],
        chosen: list[list[tuple[int, tuple[str, ...]]]],
        known: list[dict[int, float]],
    ) -> None:
        """Teacher-force the candidates no search scored (fill-up rows), all queries in one batch."""
        missing = [
            [row for row, _ in rows if row not in seen] for rows, seen in zip(chosen, known, strict=True)
        ]
        if not any(missing):
            return
        scored = self.decoder.score_ids(queries, [[self.ids[r] for r in rows] for rows in missing])
        for seen, rows, values in zip(known, missing, scored, strict=True):
            seen.update(zip(rows, values, strict=True))

    def _ranked(self, candidates: Candidates, k: int) -> list[Recommendation]:
        order, fused = rank(candidates, self.fusion)
        order = order[:k]
        dense = candidates.dense
        return [
            Recommendation(
                semantic_id=self.ids[candidates.rows[i]],
                score=float(fused[i]),
                sources=candidates.sources[i],
                model_score=math.exp(float(candidates.log_probs[i])),
                lexical_score=float(candidates.lexical[i]),
                dense_score=None if dense is None else float(dense[i]),
            )
            for i in order
        ]


def _candidates(
    chosen: list[tuple[int, tuple[str, ...]]], log_probs: dict[int, float], retrieved: _Retrieved
) -> Candidates:
    rows = [row for row, _ in chosen]
    return Candidates(
        rows=rows,
        sources=[sources for _, sources in chosen],
        log_probs=np.asarray([log_probs[row] for row in rows], dtype=np.float64),
        lexical=retrieved.lexical[rows].astype(np.float64),
        dense=None if retrieved.dense is None else retrieved.dense[rows].astype(np.float64),
        title=retrieved.title[rows].astype(np.float64),
        satisfied=None if retrieved.satisfied is None else retrieved.satisfied[rows].astype(np.float64),
        decisive=retrieved.decisive[rows].astype(np.float64),
    )


def _rows_with(scores: np.ndarray, found: np.ndarray, depth: int) -> list[int]:
    """The top ``depth`` rows by ``scores`` among those ``found`` (a retriever has something for)."""
    return [row for row in best_rows(np.where(found, scores, -np.inf), depth) if found[row]]
