"""What a hybrid query costs against what it finds, for the fusion settings that trade one for the other:
the share of generative's beams hybrid's model search keeps (``FusionParams.model_beam_share``) and the
margin past which a find is estimated instead of run (``estimate_margin``).

    .venv/bin/python -m bench.hybrid_cost --bundle artifacts/bundles/demo --shares 1,0.6,0.4 --margins 3,1

Training-side queries only, as ``bench.tune_fusion`` tunes on (its helpers and seeds): held-out phrasings
(``split == "valid"``), typo'd titles bare and in phrases, genres named by held-out synonyms, and cast
members at any billing position; never ``bench/queries/``, which stay unseen. Each query runs through every
setting and through generative one after the other, the order rotating, so their latencies are side by
side in time and the ratio to generative holds when the machine's speed drifts. Per setting: Recall@10
and Hit@1 per kind and overall, p50 ms and p50 / generative p50. Writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.relevance_metrics import query_metrics
from bench.tune_fusion import PEOPLE, SYNONYMS, people_pairs, typo_title_pairs, valid_examples
from semantic_ids.bundle import read_catalogue
from training.llm.held_out_synonyms import synonym_queries
from training.llm.template_files import load_templates

TOP_K = 10
BEAMS = 10


def _relevant(target: int | Sequence[int]) -> tuple[int, ...]:
    return (target,) if isinstance(target, int) else tuple(target)


def measure(
    ranker: Any, kinds: dict[str, list[tuple[str, tuple[int, ...]]]], settings: list[Any]
) -> dict[str, Any]:
    """Every query through every setting and generative, interleaved; the figures per setting."""
    from semantic_ids.hybrid import HybridRanker

    rankers = [HybridRanker(ranker.decoder, ranker.lexical, ranker.ids, s, ranker.dense) for s in settings]
    runs: list[Any] = [*rankers, None]  # None: generative
    seconds: list[list[float]] = [[] for _ in runs]
    found: dict[str, list[list[tuple[float, bool]]]] = {kind: [[] for _ in rankers] for kind in kinds}
    for text in ("a warm-up query", "another warm-up query"):
        for run in rankers:
            run.rank([text], TOP_K, "hybrid", num_beams=BEAMS)
    turn = 0
    for kind, pairs in kinds.items():
        for query, relevant in pairs:
            order = list(range(len(runs)))
            order = order[turn % len(runs) :] + order[: turn % len(runs)]
            turn += 1
            for index in order:
                run = runs[index]
                started = time.perf_counter()
                if run is None:
                    ranker.rank([query], TOP_K, "generative", num_beams=BEAMS)
                    seconds[index].append(time.perf_counter() - started)
                    continue
                rows = [
                    run.row_of[r.semantic_id] for r in run.rank([query], TOP_K, "hybrid", num_beams=BEAMS)[0]
                ]
                seconds[index].append(time.perf_counter() - started)
                metrics = query_metrics([str(row) for row in rows], {str(row) for row in relevant}, TOP_K)
                found[kind][index].append((metrics[f"recall@{TOP_K}"], metrics["mrr"] == 1.0))  # hit@1
    generative_p50 = statistics.median(seconds[-1])
    out = []
    for index, setting in enumerate(settings):
        per_kind = {
            kind: {
                "queries": len(rows[index]),
                "recall@10": round(statistics.fmean(r for r, _ in rows[index]), 4),
                "hit@1": round(statistics.fmean(h for _, h in rows[index]), 4),
            }
            for kind, rows in found.items()
        }
        pooled = [row for rows in found.values() for row in rows[index]]
        p50 = statistics.median(seconds[index])
        out.append(
            {
                "model_beam_share": setting.model_beam_share,
                "model_beams": rankers[index].model_beams(BEAMS),
                "estimate_margin": setting.estimate_margin,
                "recall@10": round(statistics.fmean(r for r, _ in pooled), 4),
                "hit@1": round(statistics.fmean(h for _, h in pooled), 4),
                "p50_ms": round(p50 * 1000, 2),
                "p50_over_generative": round(p50 / generative_p50, 3),
                "kinds": per_kind,
            }
        )
    return {"generative_p50_ms": round(generative_p50 * 1000, 2), "settings": out}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=Path("artifacts/bundles/demo"))
    parser.add_argument("--base-models-dir", type=Path, default=Path("artifacts/base_models"))
    parser.add_argument("--shares", default="1,0.6", help="model_beam_share values, comma-separated")
    parser.add_argument("--margins", default="3,1", help="estimate_margin values, comma-separated")
    parser.add_argument("--limit", type=int, default=150, help="queries of each kind (seeded samples)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results/hybrid_cost.json"))
    args = parser.parse_args(argv)
    import torch

    from app.inference.model_loading import load_recommender_model
    from semantic_ids.causal_lm import flush_denormals

    flush_denormals()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    loaded = load_recommender_model(args.bundle, args.base_models_dir, "auto", with_dense=True)
    ranker = loaded.ranker()
    profile = loaded.manifest.catalogue.profile
    run_dir = Path("artifacts/runs") / profile
    rows = list(read_catalogue(args.bundle))
    kinds: dict[str, Sequence[tuple[str, Any]]] = {
        "held_out_phrasings": valid_examples(
            run_dir / "examples.jsonl", loaded.lexical.item_ids, args.limit, 0
        )
    }
    kinds |= typo_title_pairs(rows, args.limit * 2)
    templates = run_dir / "query_templates.json"
    if templates.exists():
        kinds[SYNONYMS] = synonym_queries(load_templates(templates), rows, 0)[: args.limit]
    kinds[PEOPLE] = people_pairs(rows, args.limit)
    pairs = {
        kind: [(query, _relevant(target)) for query, target in members] for kind, members in kinds.items()
    }
    settings = [
        ranker.fusion.model_copy(update={"model_beam_share": float(share), "estimate_margin": float(margin)})
        for share, margin in itertools.product(args.shares.split(","), args.margins.split(","))
    ]
    result = {
        "command": " ".join([Path(sys.executable).name, "-m", "bench.hybrid_cost", *sys.argv[1:]]),
        "bundle_id": loaded.manifest.bundle_id,
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        **measure(ranker, pairs, settings),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"generative p50 {result['generative_p50_ms']} ms")
    print(
        "| beam share (beams) | margin | Recall@10 | Hit@1 | "
        + " | ".join(pairs)
        + " | p50 ms | / generative |"
    )
    for s in result["settings"]:
        kinds_text = " | ".join(f"{s['kinds'][k]['recall@10']:.3f}" for k in pairs)
        print(
            f"| {s['model_beam_share']} ({s['model_beams']}) | {s['estimate_margin']} | "
            f"{s['recall@10']:.4f} | {s['hit@1']:.4f} | {kinds_text} | {s['p50_ms']} | "
            f"{s['p50_over_generative']}× |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
