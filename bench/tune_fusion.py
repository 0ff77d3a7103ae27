"""Tune hybrid fusion on held-out phrasings of the training examples, and store the choice in the manifest.

    .venv/bin/python -m bench.tune_fusion --bundle artifacts/bundles/demo --limit 200 --write

The queries are the run's ``examples.jsonl`` rows with ``split == "valid"`` (phrasings the model never
trained on, of items it did), ``--typo-titles`` typo'd catalogue titles, half bare, half in "looking
for ...", made with another seed than ``bench.typo_titles`` measures with (the training queries typo
titles too), and queries that name a genre by one of the query configuration's held-out synonyms
(``held_out_synonyms``: words training never used, so the model knows them no better than a user's own
paraphrase; every film of the genre is relevant, Recall@10 capped at min(10, relevant)), and
``--people`` queries naming one cast member at any billing position, the full name or the surname alone
(every film of theirs relevant: what the decisive tier and its threshold are tuned on); never
``bench/queries/``: those stay unseen so the benchmark measures what the tuning did not look at. The
other queries have one relevant item, so their Recall@10 is Hit@10.

The model runs once per query (``bench.fusion_eval``): its beams and every candidate any setting could
use (beams ∪ lexical top ``MAX_DEPTH`` ∪ dense top ``MAX_DENSE_DEPTH``), scored teacher-forced in the
same search. The grid (method × lexical depth × weight or RRF k × title weight × dense depth × dense
weight, gated or not) is then evaluated offline on those numbers, so the whole grid costs one model
pass. The dense source is tuned when the bundle has item vectors (``semid dense-index`` adds them to a
bundle written without). The chosen setting (the rule is ``choose``'s) is printed, written to
``--out``, and with ``--write`` stored in the bundle's manifest (``retrieval.fusion``; the rest of the
bundle is untouched).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.fusion_eval import (
    MODEL_ONLY,
    Pair,
    Scored,
    baselines,
    collect,
    evaluate,
    narrowed,
    per_query_recall,
)
from bench.typo_titles import title_queries
from semantic_ids.bundle import (
    GATE_FEATURES,
    MANIFEST,
    SCHEMA_VERSION,
    DenseGate,
    FusionParams,
    Manifest,
    RetrievalInfo,
    read_catalogue,
    read_manifest,
    write_manifest,
)
from semantic_ids.fusion import gate_features
from semantic_ids.hybrid import HybridRanker
from training.llm.held_out_synonyms import synonym_queries
from training.llm.template_files import load_templates

DEPTHS = (5, 10, 20, 30, 50)
WEIGHTS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
RRF_KS = (1.0, 5.0, 10.0, 30.0, 60.0)
DENSE_DEPTHS = (0, 5, 10)
DENSE_WEIGHTS = (0.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)  # times a cosine similarity (gaps of ~0.1-0.3)
# Gated, the dense term speaks only where the query matched little lexically: there it may outweigh
# the model's own ranking (a paraphrase it never learnt), which takes more than the plain term's weights.
GATED_DENSE_WEIGHTS = (*DENSE_WEIGHTS[1:], 128.0, 256.0)
RRF_DENSE_WEIGHTS = (0.0, 1.0)
TITLE_WEIGHTS = (0.0, 4.0, 8.0, 16.0, 32.0)  # times a title match in [0, 1]
TYPO_SEED = 1  # bench.typo_titles measures with seed 0: the tuning's typos are others
TYPO_KINDS = ("typo", "typo_phrased")
GATE_WEIGHTS = (16.0, 32.0, 64.0, 128.0, 256.0)  # dense weights tried behind a learned gate
# Decisive-tier thresholds tried (``FusionParams.decisive_evidence``; None: no tier), the least first so
# the one model pass gathers the decisive matches of every threshold (``collect`` runs at the least).
DECISIVE_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, None)
GATE_L2 = 0.1  # ridge on the gate's standardised weights: a few hundred queries, six features
SYNONYMS = "held_out_synonyms"
# The fusion settings that trade a query's time for its rows, not its ranking rule (``bench.hybrid_cost``).
COST_SETTINGS = ("estimate_margin", "estimate_per_level", "model_beam_share")
PEOPLE = "people"  # queries naming one cast member, any billing position (``people_pairs``)
PEOPLE_SEED = 2  # the kind of the queries that name a category in words never trained on


def valid_examples(
    examples: Path, item_ids: Sequence[str], limit: int | None, seed: int
) -> list[tuple[str, int]]:
    """(query, target row) of the held-out phrasings, a seeded sample of ``limit`` when given."""
    row_of = {item_id: row for row, item_id in enumerate(item_ids)}
    rows = [json.loads(line) for line in examples.read_text().splitlines() if line.strip()]
    held_out = [
        (str(r["query"]), row_of[r["item_id"]])
        for r in rows
        if r.get("split") == "valid" and r["item_id"] in row_of
    ]
    if limit is not None and limit < len(held_out):
        held_out = random.Random(seed).sample(held_out, limit)
    return held_out


def typo_title_pairs(
    rows: Sequence[Any], limit: int, seed: int = TYPO_SEED
) -> dict[str, list[tuple[str, int]]]:
    """(query, target row) of a seeded sample of ``limit`` typo'd titles: half bare (``typo``), half in
    "looking for ..." (``typo_phrased``)."""
    made = title_queries(rows, seed)
    rng = random.Random(seed)
    return {
        "typo": rng.sample(made["typo"], min(len(made["typo"]), (limit + 1) // 2)),
        "typo_phrased": rng.sample(made["typo_phrased"], min(len(made["typo_phrased"]), limit // 2)),
    }


def people_pairs(rows: Sequence[Any], limit: int, seed: int = PEOPLE_SEED) -> list[Pair]:
    """(query, every row the person is in) of ``limit`` people drawn from a seeded sample of cast lists,
    any billing position alike: the full name or the surname alone, bare or in "movies with ...", the
    person's every film relevant (``PEOPLE``: the kind the decisive tier is for)."""
    films_of: dict[str, list[int]] = {}
    for row_index, row in enumerate(rows):
        for name in row.get("fields", {}).get("cast", []) or []:
            films_of.setdefault(str(name), []).append(row_index)
    rng = random.Random(seed)
    names = sorted(films_of)
    out: list[Pair] = []
    for name in rng.sample(names, min(limit, len(names))):
        said = name if rng.random() < 0.5 or " " not in name else name.split()[-1]
        query = said if rng.random() < 0.5 else f"movies with {said}"
        relevant = tuple(films_of[name])
        if said != name:  # a surname alone: every film with someone of that surname is as good
            same = {row for other, films in films_of.items() if other.split()[-1] == said for row in films}
            relevant = tuple(sorted(same))
        out.append((query, relevant))
    return out


def grid(dense: bool = False) -> list[FusionParams]:
    """The model alone first (so fusion is chosen only where it measures better), then the settings;
    with ``dense``, each also with the dense source's depths and weights."""
    dense_options = (
        [(d, w, False) for d in DENSE_DEPTHS for w in DENSE_WEIGHTS] if dense else [(0, 0.0, False)]
    )
    if dense:  # the gated dense term too
        dense_options += [(d, w, True) for d in DENSE_DEPTHS for w in GATED_DENSE_WEIGHTS]
    rrf_dense = [(d, w) for d in DENSE_DEPTHS for w in RRF_DENSE_WEIGHTS] if dense else [(0, 0.0)]
    linear = [
        FusionParams(
            method="linear",
            lexical_depth=d,
            lexical_weight=w,
            title_weight=t,
            dense_depth=dd,
            dense_weight=dw,
            dense_gated=gated,
        )
        for d in DEPTHS
        for w in WEIGHTS
        for t in TITLE_WEIGHTS
        for dd, dw, gated in dense_options
    ]
    rrf = [
        FusionParams(method="rrf", lexical_depth=d, rrf_k=k, dense_depth=dd, dense_weight=dw)
        for d in DEPTHS
        for k in RRF_KS
        for dd, dw in rrf_dense
    ]
    return [MODEL_ONLY, *linear, *rrf]


def choose(
    collected: Sequence[Scored], groups: Mapping[str, Sequence[Scored]] | None = None
) -> tuple[FusionParams, list[dict[str, Any]]]:
    """The setting that gives the dense source the most candidates, then the model the most say, among
    those whose Recall@10 is within noise of the best (one standard error, rounded up to whole queries)
    and, where any is, not below the lexical retriever's alone (else the grid's best: a user comparing the
    two should never find lexical ahead), and the table.

    Held-out phrasings are template queries (titles, directors, cast) where BM25 is near perfect, so
    Recall@10 saturates and MRR keeps rising with the lexical weight: picking the maximum would tune the
    model out by a query or two. Only the held-out synonyms show what the dense source adds (paraphrases,
    where dense retrieval measured ahead of both the model and BM25 on unseen queries, bench/HISTORY.md),
    and reranking cannot add the finds only it has: so first the largest dense depth that all the
    queries together do not measurably reject. Then, among the settings of that depth, the
    smallest lexical weight, so paraphrase and other-language queries, where the model and not BM25 is
    right, keep the model's ranking, and a better model shows through; the title weight, like the lexical
    one, as small as the typo'd titles allow; then the largest dense weight, then the smallest lexical
    depth (fewer candidates to score). RRF is taken only when no linear setting is within noise.

    ``groups`` (kinds of query, together ``collected``) keep a small kind from being traded away in that
    second step: pooled with 200 held-out phrasings, 50 typo'd titles in "looking for ..." lost four of
    their number (0.92 Hit@10 where lexical alone had 0.99, bench/HISTORY.md) and the pool was still
    within one standard error; so each kind must be within noise of its own best at the chosen depth. The
    dense depth is left to the pool: its benefit lies outside these kinds, and held to each kind's noise a
    single held-out phrasing lost of 200 turned the dense source off. A kind whose queries have many
    relevant items (the held-out synonyms) has recalls between 0 and 1, whose spread is measured: the
    hit-or-miss standard error would let it lose twice as much. Where no setting is within noise on
    every kind (the paraphrases want the dense term loud, typo'd titles want it quiet), the settings
    that fall least short, in each kind's noise, are the ones ``_say`` orders.
    """
    has_dense = bool(collected) and all(s.dense_rank is not None for s in collected)
    settings = grid(dense=has_dense)
    table: list[dict[str, Any]] = [
        {"params": p.model_dump(exclude={"tuned_on", "figures"}), **evaluate(collected, p)} for p in settings
    ]
    by_kind = {
        kind: [evaluate(members, p)["recall@10"] for p in settings]
        for kind, members in (groups or {}).items()
    }
    for kind, recalls in by_kind.items():
        for row, recall in zip(table, recalls, strict=True):
            row.setdefault("recall@10_by_kind", {})[kind] = recall
    n = max(1, len(collected))
    best = max(row["recall@10"] for row in table)
    lexical = baselines(collected)["lexical"]["recall@10"]
    pooled = _within_noise([row["recall@10"] for row in table], len(collected))
    at_lexical = [i for i in pooled if table[i]["recall@10"] >= lexical - 0.5 / n]
    # Where no setting reaches lexical alone, the ones that come closest: the grid's best.
    candidates = at_lexical or [i for i, row in enumerate(table) if row["recall@10"] >= best - 0.5 / n]
    linear = [i for i in candidates if settings[i].method == "linear" and settings[i].lexical_weight > 0]
    if not linear:
        pick = max(candidates, key=lambda i: (table[i]["recall@10"], table[i]["mrr@10"], -i))
        return settings[pick], table
    depth = max(settings[i].dense_depth for i in linear)
    same_depth = [i for i in linear if settings[i].dense_depth == depth]
    # Each kind's shortfall from its own best at this depth, in its noise: within noise at 1 or less.
    shortfall = dict.fromkeys(same_depth, 0.0)
    for kind, members in (groups or {}).items():
        kind_recalls = {i: by_kind[kind][i] for i in same_depth}
        best_at_depth = max(same_depth, key=kind_recalls.__getitem__)
        n_kind = max(1, len(members))
        spread = _spread(members, settings[best_at_depth])
        tolerance = _tolerance(kind_recalls[best_at_depth], n_kind, spread)
        for i in same_depth:
            missing = (kind_recalls[best_at_depth] - kind_recalls[i] - 0.5 / n_kind) / tolerance
            shortfall[i] = max(shortfall[i], missing)
    # Settings within noise on every kind; where none is, the ones that fall least short of it.
    bound = max(1.0, min(shortfall.values()))
    pick = min((i for i in same_depth if shortfall[i] <= bound), key=lambda i: _say(settings[i]))
    return settings[pick], table


def fit_dense_gate(collected: Sequence[Scored], base: FusionParams, weight: float) -> DenseGate:
    """A logistic gate that opens the dense term (``weight`` times the cosine, on top of ``base`` without
    its dense term) for the queries it helps: each query's label is whether the open term raised its
    Recall@10, its weight by how much it moved it (a query it left alone teaches nothing). Fitted on
    standardised features with a small ridge (Newton steps), stored in the features' own units."""
    closed = base.model_copy(update={"dense_weight": 0.0, "dense_gated": False, "dense_gate": None})
    opened = closed.model_copy(update={"dense_weight": weight})
    features = np.asarray(
        [[gate_features(narrowed(s, base))[name] for name in GATE_FEATURES] for s in collected]
    )
    gain = np.asarray(per_query_recall(collected, opened)) - np.asarray(per_query_recall(collected, closed))
    label, sample = (gain > 0).astype(np.float64), np.abs(gain)
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-9
    x = np.hstack([np.ones((len(features), 1)), (features - mean) / scale])
    coef = np.zeros(x.shape[1])
    ridge = np.diag([0.0] + [2.0 * GATE_L2] * len(GATE_FEATURES))
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ coef, -50.0, 50.0)))
        gradient = x.T @ (sample * (p - label)) + ridge @ coef
        hessian = (x * (sample * p * (1.0 - p))[:, None]).T @ x + ridge + 1e-9 * np.eye(len(coef))
        step = np.linalg.solve(hessian, gradient)
        coef -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    weights = coef[1:] / scale
    return DenseGate(
        bias=round(float(coef[0] - weights @ mean), 6),
        weights={name: round(float(w), 6) for name, w in zip(GATE_FEATURES, weights, strict=True)},
    )


def gate_the_dense_term(
    best: FusionParams, groups: Mapping[str, Sequence[Scored]]
) -> tuple[FusionParams, list[dict[str, Any]]]:
    """``best`` with its dense term behind a learned gate (``fit_dense_gate``), at the largest dense weight
    where no kind falls more than its noise below what ``best`` gives it (as ``choose`` takes the largest
    dense weight within noise: the pooled figure is mostly single-item queries, where BM25 saturates and
    a query or two always tips it against the dense term); else ``best`` itself. And each weight's
    figures."""
    pooled = [s for members in groups.values() for s in members]
    if best.method != "linear" or best.dense_depth == 0 or not pooled:
        return best, []
    pick, tried = best, []
    floor = {}  # each kind's recall under ``best``, less its noise: what a gated setting must keep
    for kind, members in groups.items():
        before = evaluate(members, best)["recall@10"]
        tolerance = _tolerance(before, len(members), _spread(members, best))
        floor[kind] = before - tolerance - 0.5 / len(members)
    for weight in GATE_WEIGHTS:
        gated = best.model_copy(
            update={
                "dense_weight": weight,
                "dense_gated": False,
                "dense_gate": fit_dense_gate(pooled, best, weight),
            }
        )
        by_kind = {kind: evaluate(members, gated)["recall@10"] for kind, members in groups.items()}
        holds = all(by_kind[kind] >= floor[kind] for kind in groups)
        recall = evaluate(pooled, gated)["recall@10"]
        tried.append(
            {"dense_weight": weight, "recall@10": recall, "recall@10_by_kind": by_kind, "holds": holds}
        )
        if holds:
            pick = gated
    return pick, tried


def tune_decisive(
    best: FusionParams, groups: Mapping[str, Sequence[Scored]]
) -> tuple[FusionParams, list[dict[str, Any]]]:
    """``best`` with the decisive tier's threshold that gives all the queries together the best Recall@10
    (then MRR@10) among those where no kind falls more than its noise below its own best threshold; ties
    to the higher threshold (the tier overrides the model and the dense source less often). And each
    threshold's figures."""
    pooled = [s for members in groups.values() for s in members]
    if not pooled:
        return best, []
    settings = [best.model_copy(update={"decisive_evidence": t}) for t in DECISIVE_THRESHOLDS]
    by_kind = {k: [evaluate(members, p)["recall@10"] for p in settings] for k, members in groups.items()}
    holds = [True] * len(settings)
    for kind, members in groups.items():
        top = max(range(len(settings)), key=by_kind[kind].__getitem__)
        tolerance = _tolerance(by_kind[kind][top], len(members), _spread(members, settings[top]))
        for i, recall in enumerate(by_kind[kind]):
            holds[i] = holds[i] and recall >= by_kind[kind][top] - tolerance - 0.5 / len(members)
    tried = []
    for i, params in enumerate(settings):
        figures = evaluate(pooled, params)
        by = {kind: recalls[i] for kind, recalls in by_kind.items()}
        tried.append({"decisive_evidence": params.decisive_evidence, **figures, "recall@10_by_kind": by,
                      "holds": holds[i]})  # fmt: skip
    eligible = [i for i in range(len(settings)) if holds[i]] or list(range(len(settings)))
    threshold = [2.0 if t is None else t for t in DECISIVE_THRESHOLDS]  # None: never, above any threshold
    pick = max(eligible, key=lambda i: (tried[i]["recall@10"], tried[i]["mrr@10"], threshold[i]))
    return settings[pick], tried


def _spread(members: Sequence[Scored], params: FusionParams) -> float | None:
    """The per-query spread of a kind with many relevant items per query; None: hit or miss."""
    if any(len(s.relevant) > 1 for s in members) and len(members) > 1:
        return statistics.stdev(per_query_recall(members, params))
    return None


def _within_noise(recalls: Sequence[float], n: int) -> list[int]:
    """The positions of the recalls within noise of the best of ``n`` queries (the figures are rounded to
    4 decimals: compared in whole queries)."""
    n = max(1, n)
    best = max(recalls)
    tolerance = noise(best, n)
    return [i for i, recall in enumerate(recalls) if recall >= best - tolerance - 0.5 / n]


def _tolerance(best: float, n: int, spread: float | None) -> float:
    """One standard error of the best Recall@10 of ``n`` queries, in whole queries (at least one).
    ``spread``: the per-query standard deviation, for a kind of query whose recalls lie between 0 and 1
    (many relevant items), where the hit-or-miss ``noise`` overstates it; None: hit or miss."""
    if spread is None:
        return noise(best, n)
    return max(1, math.ceil(spread * math.sqrt(n) - 1e-6)) / n


def noise(recall: float, n: int) -> float:
    """One standard error of a Recall@10 of ``n`` queries, rounded up to whole queries (at least one)."""
    return max(1, math.ceil(math.sqrt(recall * (1.0 - recall) / n) * n - 1e-6)) / n


def _say(p: FusionParams) -> tuple[int, bool, float, float, float, int]:
    """The order ``choose`` prefers among settings within noise: the dense source's finds first (reranking
    cannot add what only it finds), then its gated term (it speaks where the query matched little
    lexically, the queries these kinds cannot show), then the least lexical say, then the most dense say."""
    return (
        -p.dense_depth,
        not p.dense_gated,
        p.lexical_weight,
        p.title_weight,
        -p.dense_weight,
        p.lexical_depth,
    )


def write_fusion(bundle_dir: Path, fusion: FusionParams) -> Manifest:
    """Replace the manifest's fusion parameters (atomically: a sibling file renamed over it). A schema-1
    manifest becomes schema 2 without a lexical index (``lexical_index: null``: built at load)."""
    manifest = read_manifest(bundle_dir)
    retrieval = manifest.retrieval or RetrievalInfo(lexical_index=None)
    updated = manifest.model_copy(
        update={
            "schema_version": SCHEMA_VERSION,
            "retrieval": retrieval.model_copy(update={"fusion": fusion}),
        }
    )
    write_manifest(bundle_dir, updated)
    return updated


def tune(
    ranker: HybridRanker,
    pairs: Sequence[tuple[str, int]],
    *,
    beams: int,
    batch: int,
    source: str,
    kinds: Mapping[str, Sequence[Pair]] | None = None,
) -> dict[str, Any]:
    """Choose on the held-out phrasings and the other kinds of query (typo'd titles, held-out synonyms)
    together, each kind within noise of its own best (``choose``); the figures of each kind apart."""
    # Gathered at the least decisive threshold, so the candidates hold every threshold's decisive matches.
    least = min(t for t in DECISIVE_THRESHOLDS if t is not None)
    served = ranker.fusion
    ranker.fusion = ranker.fusion.model_copy(update={"decisive_evidence": least})
    groups = {"held_out_phrasings": collect(ranker, pairs, beams=beams, batch=batch)}
    for kind, kind_pairs in (kinds or {}).items():
        if kind_pairs:
            groups[kind] = collect(ranker, kind_pairs, beams=beams, batch=batch)
    pooled = [scored for members in groups.values() for scored in members]
    best, table = choose(pooled, groups)
    best, gate_weights = gate_the_dense_term(best, groups)
    best, thresholds = tune_decisive(best, groups)
    best_recall = max(table, key=lambda row: (row["recall@10"], row["mrr@10"]))
    figures: dict[str, Any] = {
        "queries": len(pooled),
        "hybrid": evaluate(pooled, best),
        **baselines(pooled),
        "best_in_grid": best_recall,
        "learned_gate": gate_weights,
        "decisive_thresholds": thresholds,
        "rule": "within one standard error (whole queries) of the best Recall@10 on all queries, not below "
        "lexical alone: the largest dense depth; then, each kind within noise of its own best at that depth, "
        "the gated dense term, the smallest lexical and title weights, the largest dense weight (a kind of "
        "many-relevant queries within its measured standard error; where no setting is within noise on every "
        "kind, those that fall least short); then the dense term behind a gate learned on the same queries, "
        "at the largest dense weight where no kind falls more than its noise; last the decisive tier's "
        "threshold with the best Recall@10 among those that keep every kind within its noise",
    }
    for kind, members in groups.items():
        figures[kind] = {"queries": len(members), "hybrid": evaluate(members, best), **baselines(members)}
    tuned_on = f"{len(pairs)} held-out phrasings ({source}, split=valid)"
    typos = sum(len(groups.get(kind, ())) for kind in TYPO_KINDS)
    if typos:
        tuned_on += f", {typos} typo'd titles (seed {TYPO_SEED})"
    if groups.get(SYNONYMS):
        tuned_on += f", {len(groups[SYNONYMS])} queries naming a genre by a held-out synonym"
    if groups.get(PEOPLE):
        tuned_on += f", {len(groups[PEOPLE])} queries naming a cast member (seed {PEOPLE_SEED})"
    # What a query costs is chosen elsewhere (``bench.hybrid_cost``): the bundle's settings are kept.
    cost = {key: getattr(served, key) for key in COST_SETTINGS}
    chosen = best.model_copy(update={"tuned_on": tuned_on, "figures": figures, **cost})
    return {"chosen": chosen.model_dump(), "figures": figures, "grid": table}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=Path("artifacts/bundles/demo"))
    parser.add_argument(
        "--examples", type=Path, default=None, help="default: artifacts/runs/<profile>/examples.jsonl"
    )
    parser.add_argument("--base-models-dir", type=Path, default=Path("artifacts/base_models"))
    parser.add_argument("--limit", type=int, default=200, help="held-out phrasings sampled (seeded)")
    parser.add_argument(
        "--typo-titles", type=int, default=200, help="typo'd catalogue titles added (half bare, half phrased)"
    )
    parser.add_argument(
        "--templates",
        type=Path,
        default=None,
        help="the query configuration whose held-out synonyms are tuned on (default: the run's "
        "query_templates.json)",
    )
    parser.add_argument(
        "--people", type=int, default=100, help="queries naming one cast member at any billing position"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--beams", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results/fusion_tuning.json"))
    parser.add_argument("--write", action="store_true", help="store the chosen parameters in the manifest")
    args = parser.parse_args(argv)
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, str(args.threads))
    import torch

    from app.inference.model_loading import load_recommender_model

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    loaded = load_recommender_model(args.bundle, args.base_models_dir, "auto", with_dense=True)
    profile = loaded.manifest.catalogue.profile
    examples = args.examples or Path("artifacts/runs") / profile / "examples.jsonl"
    pairs = valid_examples(examples, loaded.lexical.item_ids, args.limit, args.seed)
    rows = list(read_catalogue(args.bundle))
    kinds: dict[str, Sequence[Pair]] = dict(typo_title_pairs(rows, args.typo_titles))
    templates = args.templates or Path("artifacts/runs") / profile / "query_templates.json"
    kinds[SYNONYMS] = (
        synonym_queries(load_templates(templates), rows, args.seed) if templates.exists() else []
    )
    kinds[PEOPLE] = people_pairs(rows, args.people)
    if not kinds[SYNONYMS]:
        logging.warning("%s names no held-out synonyms: the dense weight is tuned without them", templates)
    result = tune(
        loaded.ranker(), pairs, beams=args.beams, batch=args.batch, source=str(examples), kinds=kinds
    )
    result = {
        "command": " ".join([Path(sys.executable).name, "-m", "bench.tune_fusion", *sys.argv[1:]]),
        "bundle_id": loaded.manifest.bundle_id,
        **result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"chosen": result["chosen"], "figures": result["figures"]}, indent=1))
    if args.write:
        write_fusion(args.bundle, FusionParams.model_validate(result["chosen"]))
        print(f"stored in {args.bundle / MANIFEST}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
