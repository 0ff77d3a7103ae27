"""Tune hybrid fusion on held-out phrasings of the training examples, and store the choice in the manifest.

    .venv/bin/python -m bench.tune_fusion --bundle artifacts/bundles/demo --limit 200 --write

The queries are the run's ``examples.jsonl`` rows with ``split == "valid"`` (phrasings the model never
trained on, of items it did), never ``bench/queries/``: those stay unseen so the benchmark measures
what the tuning did not look at. Each query has one relevant item, so Recall@10 is Hit@10.

The model runs once per query (``bench.fusion_eval``): its beams and every candidate any setting could
use (beams ∪ lexical top ``MAX_DEPTH`` ∪ dense top ``MAX_DENSE_DEPTH``), scored teacher-forced in the
same search. The grid
(method × lexical depth × weight or RRF k × dense depth × dense weight) is then evaluated offline on
those numbers, so the whole grid costs one model pass. The dense source is tuned when the bundle has item
vectors (``semid dense-index`` adds them to a bundle written without). The chosen setting (the rule is
``choose``'s) is printed, written to ``--out``, and with ``--write`` stored in the bundle's manifest
(``retrieval.fusion``; the rest of the bundle is untouched).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.fusion_eval import MODEL_ONLY, Scored, baselines, collect, evaluate
from semantic_ids.bundle import (
    MANIFEST,
    SCHEMA_VERSION,
    FusionParams,
    Manifest,
    RetrievalInfo,
    read_manifest,
    write_manifest,
)
from semantic_ids.hybrid import HybridRanker

DEPTHS = (5, 10, 20, 30, 50)
WEIGHTS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
RRF_KS = (1.0, 5.0, 10.0, 30.0, 60.0)
DENSE_DEPTHS = (0, 5, 10)
DENSE_WEIGHTS = (0.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)  # times a cosine similarity (gaps of ~0.1-0.3)
RRF_DENSE_WEIGHTS = (0.0, 1.0)


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


def grid(dense: bool = False) -> list[FusionParams]:
    """The model alone first (so fusion is chosen only where it measures better), then the settings;
    with ``dense``, each also with the dense source's depths and weights."""
    dense_options = [(d, w) for d in DENSE_DEPTHS for w in DENSE_WEIGHTS] if dense else [(0, 0.0)]
    rrf_dense = [(d, w) for d in DENSE_DEPTHS for w in RRF_DENSE_WEIGHTS] if dense else [(0, 0.0)]
    linear = [
        FusionParams(method="linear", lexical_depth=d, lexical_weight=w, dense_depth=dd, dense_weight=dw)
        for d in DEPTHS
        for w in WEIGHTS
        for dd, dw in dense_options
    ]
    rrf = [
        FusionParams(method="rrf", lexical_depth=d, rrf_k=k, dense_depth=dd, dense_weight=dw)
        for d in DEPTHS
        for k in RRF_KS
        for dd, dw in rrf_dense
    ]
    return [MODEL_ONLY, *linear, *rrf]


def choose(collected: Sequence[Scored]) -> tuple[FusionParams, list[dict[str, Any]]]:
    """The setting that gives the model, then the dense source, the most say among those whose Recall@10
    is within noise of the best (one standard error, and at least one query), and the table.

    Held-out phrasings are template queries (titles, directors, cast) where BM25 is near perfect, so
    Recall@10 saturates and MRR keeps rising with the lexical weight: picking the maximum would tune the
    model out by a query or two. Within noise, the smallest lexical weight (then the smallest depth: fewer
    candidates to score) is taken, so paraphrase and other-language queries, where the model and not
    BM25 is right, keep the model's ranking, and a better model shows through. Then the largest dense
    weight (then depth) within noise: these template queries name titles and people, where the dense
    source cannot show what it adds (paraphrases and genre synonyms, where dense retrieval measured ahead
    of both the model and BM25 on unseen queries, bench/RESULTS.md), so it gets the most say that they do
    not measurably reject. RRF is taken only when no linear setting is within noise.
    """
    has_dense = bool(collected) and all(s.dense_rank is not None for s in collected)
    settings = grid(dense=has_dense)
    fields = {"method", "lexical_depth", "lexical_weight", "rrf_k", "dense_depth", "dense_weight"}
    table = [{"params": p.model_dump(include=fields), **evaluate(collected, p)} for p in settings]
    n = max(1, len(collected))
    best = max(row["recall@10"] for row in table)
    tolerance = max(math.sqrt(best * (1.0 - best) / n), 1.0 / n)
    eligible = [i for i, row in enumerate(table) if row["recall@10"] >= best - tolerance - 1e-9]
    linear = [i for i in eligible if settings[i].method == "linear" and settings[i].lexical_weight > 0]
    if linear:
        pick = min(linear, key=lambda i: _say(settings[i]))
    else:
        pick = max(eligible, key=lambda i: (table[i]["recall@10"], table[i]["mrr@10"], -i))
    return settings[pick], table


def _say(p: FusionParams) -> tuple[float, float, int, int]:
    """The order ``choose`` prefers among settings within noise: least lexical say, most dense say."""
    return (p.lexical_weight, -p.dense_weight, p.lexical_depth, -p.dense_depth)


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
        "rule": "within one standard error (>= 1 query) of the best Recall@10: the smallest lexical weight, "
        "then the largest dense weight and depth",
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
    loaded = load_recommender_model(args.bundle, args.base_models_dir, "auto", with_dense=True)
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
