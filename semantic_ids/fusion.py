"""Hybrid mode's candidates and how their scores fuse into one ranking (``semantic_ids.hybrid`` runs it).

Each candidate carries the model's log-probability of its ID, its lexical score in [0, 1] and, when
the dense source takes part, its cosine similarity to the query. ``FusionParams.method`` says how they
combine:

- ``linear``: ``log p_model(ID | query) + lexical_weight * lexical + title_weight * title match +
  dense_weight * cosine``: the model's ranking with bonuses for lexical and dense evidence, in the
  model's own units; with ``dense_gated`` the dense weight shrinks as the query's best lexical evidence
  grows, or with a learned ``dense_gate`` as that gate on the query's signals says (``dense_weight``);
- ``rrf``: reciprocal-rank fusion over the candidates, ``1 / (rrf_k + model rank) + 1 / (rrf_k +
  lexical rank) + dense_weight / (rrf_k + dense rank)``: blind to the scales, only the orders count.

``rank`` orders candidates by that fused score within two tiers that come first (issue 24):

1. **attributes**: the fraction of the query's structured attributes a candidate meets
   (``semantic_ids.query_attributes``: "a comedy from the nineties" asks for both), so a decade or a
   genre the query names is never outranked by a row outside it while enough rows meet it;
2. **decisive lexical matches**: candidates whose lexical evidence alone is decisive
   (``LexicalScores.decisive`` at least ``FusionParams.decisive_evidence``: they match all of the
   query's content words, typically a person's name or a title, and the query has little else) come
   before those the model or the dense neighbours prefer on looser grounds. Full-row BM25 finds the
   film of a query naming its 12th-billed actor first; fusion keeps it there.

Where neither tier separates candidates (no attributes, no decisive match: a paraphrase, a vague
query), the model and the dense source rank as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from semantic_ids.bundle import GATE_FEATURES, DenseGate, FusionParams

MODEL, LEXICAL, DENSE = "model", "lexical", "dense"  # the sources an item can be found by, in this order
SOURCES = (MODEL, LEXICAL, DENSE)
# The decisive lexical matches that join the candidates, per item asked for: the tier keeps only the rows
# that are candidates, and a name in more films than the lexical depth would otherwise lose the rest.
DECISIVE_DEPTH_PER_K = 3
_FLOOR = -1e9  # stands in for a -inf log-probability, so sums and sorts stay finite


@dataclass(frozen=True)
class Candidates:
    """One query's candidate rows with their component scores, before fusion."""

    rows: list[int]
    sources: list[tuple[str, ...]]
    log_probs: np.ndarray  # (candidates,) model log-probabilities
    lexical: np.ndarray  # (candidates,) lexical scores
    dense: np.ndarray | None = None  # (candidates,) cosine similarities; None: the dense source is off
    title: np.ndarray | None = None  # (candidates,) fuzzy title matches in [0, 1]; None: not known
    satisfied: np.ndarray | None = None  # (candidates,) fraction of the query's attributes met; None: none
    decisive: np.ndarray | None = None  # (candidates,) lexical decisiveness in [0, 1]; None: not known

    def subset(self, index: np.ndarray) -> Candidates:
        """The candidates at ``index`` (positions), in that order."""
        return Candidates(
            rows=[self.rows[i] for i in index],
            sources=[self.sources[i] for i in index],
            log_probs=self.log_probs[index],
            lexical=self.lexical[index],
            dense=None if self.dense is None else self.dense[index],
            title=None if self.title is None else self.title[index],
            satisfied=None if self.satisfied is None else self.satisfied[index],
            decisive=None if self.decisive is None else self.decisive[index],
        )


def fuse(candidates: Candidates, params: FusionParams) -> np.ndarray:
    """(candidates,) fused scores, higher is better."""
    log_probs = np.where(np.isfinite(candidates.log_probs), candidates.log_probs, _FLOOR)
    dense = candidates.dense if candidates.dense is not None and params.dense_weight > 0.0 else None
    if params.method == "linear":
        fused: np.ndarray = log_probs + params.lexical_weight * candidates.lexical
        if candidates.title is not None and params.title_weight > 0.0:
            fused = fused + params.title_weight * candidates.title
        if dense is None:
            return fused
        return fused + dense_weight(candidates, params) * dense
    rrf: np.ndarray = 1.0 / (params.rrf_k + _ranks(log_probs)) + 1.0 / (
        params.rrf_k + _ranks(candidates.lexical)
    )
    return rrf if dense is None else rrf + params.dense_weight / (params.rrf_k + _ranks(dense))


def tiers(candidates: Candidates, params: FusionParams) -> tuple[np.ndarray, np.ndarray]:
    """(candidates,) the attribute tier and the decisive tier (0 or 1) that come before the fused score."""
    count = len(candidates.rows)
    satisfied = candidates.satisfied if candidates.satisfied is not None and params.attributes else None
    attribute_tier = np.zeros(count) if satisfied is None else np.round(satisfied, 6)
    if candidates.decisive is None or params.decisive_evidence is None:
        return attribute_tier, np.zeros(count)
    return attribute_tier, (candidates.decisive >= params.decisive_evidence).astype(np.float64)


def rank(candidates: Candidates, params: FusionParams) -> tuple[np.ndarray, np.ndarray]:
    """Candidate positions best first (attributes met, then decisive lexical matches, then the fused
    score), and the fused scores."""
    fused = fuse(candidates, params)
    attribute_tier, decisive_tier = tiers(candidates, params)
    return np.lexsort((-fused, -decisive_tier, -attribute_tier)), fused


def dense_weight(candidates: Candidates, params: FusionParams) -> float:
    """The linear dense weight for this query: ``dense_weight``; with a learned ``dense_gate`` that times
    the gate's opening; else with ``dense_gated`` that times one minus the best lexical evidence among its
    candidates (in [0, 1]): their lexical score, or their title match on its own, which the lexical score
    weighs down (a typo'd title barely registers with BM25, yet the query named that title and the dense
    neighbours should stand back)."""
    if params.dense_gate is not None:
        return params.dense_weight * gate_opening(candidates, params.dense_gate)
    if not params.dense_gated:
        return params.dense_weight
    evidence = float(candidates.lexical.max()) if len(candidates.lexical) else 0.0
    if candidates.title is not None and len(candidates.title):
        evidence = max(evidence, float(candidates.title.max()))
    return params.dense_weight * (1.0 - min(1.0, max(0.0, evidence)))


def gate_features(candidates: Candidates) -> dict[str, float]:
    """One query's ``GATE_FEATURES``, from its candidates alone (the service and the tuning agree)."""
    beams = np.asarray([MODEL in s for s in candidates.sources], dtype=bool)
    found_dense = np.asarray([DENSE in s for s in candidates.sources], dtype=bool)
    log_probs = np.where(np.isfinite(candidates.log_probs), candidates.log_probs, _FLOOR)
    best = np.sort(log_probs[beams])[::-1] if beams.any() else np.zeros(1)
    title = candidates.title if candidates.title is not None and len(candidates.title) else np.zeros(1)
    dense = candidates.dense if candidates.dense is not None and len(candidates.dense) else np.zeros(1)
    features = {
        "lexical_evidence": float(candidates.lexical.max()) if len(candidates.lexical) else 0.0,
        "title_match": float(title.max()),
        "model_top_log_prob": float(best[0]),
        "model_top_gap": float(best[0] - best[1]) if len(best) > 1 else 0.0,
        "dense_top_cosine": float(dense.max()),
        "beam_dense_overlap": float((beams & found_dense).sum() / max(1, found_dense.sum())),
    }
    assert tuple(features) == GATE_FEATURES
    return features


def gate_opening(candidates: Candidates, gate: DenseGate) -> float:
    """The learned gate's opening in (0, 1) for this query."""
    features = gate_features(candidates)
    z = gate.bias + sum(weight * features[name] for name, weight in gate.weights.items())
    return float(1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0))))


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, best (highest) first; ties broken by position."""
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    return ranks


def best_rows(scores: np.ndarray, n: int) -> list[int]:
    """The ``n`` best rows, best first, ties in catalogue order. Linear in the rows, not a sort of all of
    them: at a million items a full sort took ~100 ms, and hybrid asks for four rankings a query."""
    n = min(n, len(scores))
    if n <= 0:
        return []
    if n == len(scores):
        return [int(row) for row in np.argsort(-scores, kind="stable")]
    cut = scores[np.argpartition(-scores, n - 1)[n - 1]]  # the n-th best score
    better = np.flatnonzero(scores > cut)
    chosen = np.concatenate([better, np.flatnonzero(scores == cut)[: n - len(better)]])
    chosen.sort()  # catalogue order, which the stable sort below keeps among ties
    return [int(row) for row in chosen[np.argsort(-scores[chosen], kind="stable")]]


def union(
    beam_rows: Sequence[int],
    found: Sequence[tuple[str, Sequence[int]]],
    filler: Sequence[int],
    wanted: int,
) -> list[tuple[int, tuple[str, ...]]]:
    """Beam rows, then each retriever's rows (``(source, rows)``), each row once with every source that
    found it, then ``filler`` rows (lexical order, sourced ``lexical``) until there are ``wanted``."""
    sources: dict[int, set[str]] = {row: {MODEL} for row in beam_rows}
    for source, rows in found:
        for row in rows:
            sources.setdefault(row, set()).add(source)
    for row in filler:
        if len(sources) >= wanted:
            break
        sources.setdefault(row, {LEXICAL})
    return [(row, tuple(s for s in SOURCES if s in found_by)) for row, found_by in sources.items()]
