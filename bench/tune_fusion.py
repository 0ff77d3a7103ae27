"""Tune hybrid fusion on held-out phrasings of the training examples, and store the choice in the manifest.

    .venv/bin/python -m bench.tune_fusion --bundle artifacts/bundles/demo --limit 200 --write

The queries are the run's ``examples.jsonl`` rows with ``split == "valid"`` (phrasings the model never
trained on, of items it did), never ``bench/queries/``: those stay unseen so the benchmark measures
what the tuning did not look at. Each query has one relevant item, so Recall@10 is Hit@10.

The model runs once per query: its beams, then every candidate any setting could use (beams ∪ lexical
top ``MAX_DEPTH``) scored teacher-forced in one batch. The grid (method × lexical depth × weight or
RRF k) is then evaluated offline on those numbers, so the whole grid costs one model pass. The best
setting by Recall@10 (ties: MRR, then the simpler setting first) is printed, written to ``--out``, and
with ``--write`` stored in the bundle's manifest (``retrieval.fusion``; the rest of the bundle is untouched).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semantic_ids.bundle import (
    MANIFEST,
    SCHEMA_VERSION,
    FusionParams,
    Manifest,
    RetrievalInfo,
    read_manifest,
)
from semantic_ids.hybrid import Candidates, HybridRanker, fuse

logger = logging.getLogger("bench.tune_fusion")

TOP_K = 10
MAX_DEPTH = 50
DEPTHS = (5, 10, 20, 30, 50)
WEIGHTS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
RRF_KS = (1.0, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class Scored:
    """One query's candidates at the widest depth, with what is needed to narrow them."""

    candidates: Candidates
    is_beam: np.ndarray  # (candidates,) bool
    lexical_rank: np.ndarray  # (candidates,) 0-based rank of each candidate in the lexical ranking
    target: int  # catalogue row of the relevant item
    target_lexical_rank: int  # its 0-based rank in the lexical ranking (lexical mode alone)


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


def _batches(pairs: Sequence[tuple[str, int]], size: int) -> Iterator[Sequence[tuple[str, int]]]:
    for start in range(0, len(pairs), size):
        yield pairs[start : start + size]


def collect(
    ranker: HybridRanker, pairs: Sequence[tuple[str, int]], *, beams: int, batch: int
) -> list[Scored]:
    """One model pass: beams and teacher-forced scores of every candidate up to ``MAX_DEPTH``."""
    out: list[Scored] = []
    for done, chunk in enumerate(_batches(pairs, batch)):
        queries = [query for query, _ in chunk]
        found = ranker.decoder.decode(queries, num_beams=beams, top_k=beams)
        gathered = ranker.candidates(queries, found, TOP_K, depth=MAX_DEPTH)
        for (query, target), candidates, beam_row in zip(chunk, gathered, found, strict=True):
            beam_rows = {ranker.row_of[c.semantic_id] for c in beam_row}
            combined = ranker.lexical.scores(query).combined
            order = np.argsort(-combined, kind="stable")
            rank_of = np.empty(len(order), dtype=np.int64)
            rank_of[order] = np.arange(len(order))
            rows = np.asarray(candidates.rows)
            is_beam = np.asarray([row in beam_rows for row in candidates.rows])
            out.append(Scored(candidates, is_beam, rank_of[rows], target, int(rank_of[target])))
        logger.info("scored %d / %d queries", min((done + 1) * batch, len(pairs)), len(pairs))
    return out


def _narrowed(scored: Scored, depth: int) -> Candidates:
    """The candidates ``depth`` would have given: beams, and lexical finds within the top ``depth``."""
    c = scored.candidates
    keep = scored.is_beam | ((scored.lexical_rank < depth) & (c.lexical > 0.0))
    index = np.flatnonzero(keep)
    return Candidates(
        rows=[c.rows[i] for i in index],
        sources=[c.sources[i] for i in index],
        log_probs=c.log_probs[index],
        lexical=c.lexical[index],
    )


def evaluate(collected: Sequence[Scored], params: FusionParams) -> dict[str, float]:
    """Recall@10 (= Hit@10: one relevant item) and MRR@10 of one setting."""
    hits, reciprocal = 0, 0.0
    for scored in collected:
        candidates = _narrowed(scored, params.lexical_depth)
        order = np.argsort(-fuse(candidates, params), kind="stable")[:TOP_K]
        top = [candidates.rows[i] for i in order]
        if scored.target in top:
            hits += 1
            reciprocal += 1.0 / (top.index(scored.target) + 1)
    n = max(1, len(collected))
    return {"recall@10": round(hits / n, 4), "mrr@10": round(reciprocal / n, 4)}


MODEL_ONLY = FusionParams(method="linear", lexical_depth=0, lexical_weight=0.0)


def baselines(collected: Sequence[Scored]) -> dict[str, dict[str, float]]:
    """The model alone (beams by probability) and the lexical retriever alone, on the same queries."""
    n = max(1, len(collected))
    lexical_hits = sum(int(s.target_lexical_rank < TOP_K) for s in collected)
    reciprocal = sum(1.0 / (s.target_lexical_rank + 1) for s in collected if s.target_lexical_rank < TOP_K)
    return {
        "generative": evaluate(collected, MODEL_ONLY),
        "lexical": {"recall@10": round(lexical_hits / n, 4), "mrr@10": round(reciprocal / n, 4)},
    }


def grid() -> list[FusionParams]:
    """The model alone first (so fusion is chosen only where it measures better), then the settings."""
    settings = [MODEL_ONLY] + [
        FusionParams(method="linear", lexical_depth=d, lexical_weight=w) for d in DEPTHS for w in WEIGHTS
    ]
    return settings + [FusionParams(method="rrf", lexical_depth=d, rrf_k=k) for d in DEPTHS for k in RRF_KS]


def choose(collected: Sequence[Scored]) -> tuple[FusionParams, list[dict[str, Any]]]:
    """The setting that gives the model the most say among those whose Recall@10 is within noise of the
    best (one standard error, and at least one query), and the table.

    Held-out phrasings are template queries (titles, directors, cast) where BM25 is near perfect, so
    Recall@10 saturates and MRR keeps rising with the lexical weight: picking the maximum would tune the
    model out by a query or two. Within noise, the smallest lexical weight (then the smallest depth: fewer
    candidates to score) is taken, so paraphrase and other-language queries, where the model and not
    BM25 is right, keep the model's ranking, and a better model shows through. RRF is taken only when no
    linear setting is within noise.
    """
    settings = grid()
    table = [
        {
            "params": p.model_dump(include={"method", "lexical_depth", "lexical_weight", "rrf_k"}),
            **evaluate(collected, p),
        }
        for p in settings
    ]
    n = max(1, len(collected))
    best = max(row["recall@10"] for row in table)
    tolerance = max(math.sqrt(best * (1.0 - best) / n), 1.0 / n)
    eligible = [i for i, row in enumerate(table) if row["recall@10"] >= best - tolerance - 1e-9]
    linear = [i for i in eligible if settings[i].method == "linear" and settings[i].lexical_weight > 0]
    if linear:
        pick = min(linear, key=lambda i: (settings[i].lexical_weight, settings[i].lexical_depth))
    else:
        pick = max(eligible, key=lambda i: (table[i]["recall@10"], table[i]["mrr@10"], -i))
    return settings[pick], table


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
    Manifest.model_validate(updated.model_dump())  # still a valid manifest
    partial = bundle_dir / f".{MANIFEST}.partial"
    partial.write_text(updated.model_dump_json(indent=2) + "\n")
    os.replace(partial, bundle_dir / MANIFEST)
    return updated


def tune(
    ranker: HybridRanker, pairs: Sequence[tuple[str, int]], *, beams: int, batch: int, source: str
) -> dict[str, Any]:
    collected = collect(ranker, pairs, beams=beams, batch=batch)
    best, table = choose(collected)
    best_recall = max(table, key=lambda row: (row["recall@10"], row["mrr@10"]))
    figures = {
        "queries": len(pairs),
        "hybrid": evaluate(collected, best),
        **baselines(collected),
        "best_in_grid": best_recall,
        "rule": "smallest lexical weight within one standard error (>= 1 query) of the best Recall@10",
    }
    chosen = best.model_copy(
        update={"tuned_on": f"{len(pairs)} held-out phrasings ({source}, split=valid)", "figures": figures}
    )
    return {"chosen": chosen.model_dump(), "figures": figures, "grid": table}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=Path("artifacts/bundles/demo"))
    parser.add_argument(
        "--examples", type=Path, default=None, help="default: artifacts/runs/<profile>/examples.jsonl"
    )
    parser.add_argument("--base-models-dir", type=Path, default=Path("artifacts/base_models"))
    parser.add_argument("--limit", type=int, default=200, help="held-out phrasings sampled (seeded)")
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
    loaded = load_recommender_model(args.bundle, args.base_models_dir, "auto")
    profile = loaded.manifest.catalogue.profile
    examples = args.examples or Path("artifacts/runs") / profile / "examples.jsonl"
    pairs = valid_examples(examples, loaded.lexical.item_ids, args.limit, args.seed)
    result = tune(loaded.ranker(), pairs, beams=args.beams, batch=args.batch, source=str(examples))
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
