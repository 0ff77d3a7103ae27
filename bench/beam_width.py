"""Beam count and precision against recall and latency: the model alone, one query at a time, side by side.

    .venv/bin/python -m bench.beam_width --bundle artifacts/bundles/demo --beams 5,10,16,20,32
    .venv/bin/python -m bench.beam_width --beams 10 --precisions bf16,fp16-weights,fp32 --held-out 100
    .venv/bin/python -m bench.beam_width --beams 10 --first-level 10,20,32,64

For each precision (``SEMID_PRECISION``'s values; default: the service's ``auto``), beam count and
first-level width (``--first-level``: first codes kept, 0: as many as beams) the constrained beam
search returns its best 10 IDs; Recall@10 is measured on the run's held-out phrasings (the
evaluation's seeded sample: templates never trained on) and on ``bench/queries/demo_unseen.jsonl``,
with the p50 latency per query. Writes ``bench/results/beam_width.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.relevance_metrics import query_metrics
from bench.unseen_queries import DEFAULT_OUT
from training.io import read_jsonl
from training.run_layout import BASE_MODELS_DIR, RunLayout, bundle_dir_for

TOP_K = 10


def _held_out(run_dir: Path, count: int) -> list[dict[str, Any]]:
    from training.pipeline.stages import eval_sample

    _, valid = RunLayout(run_dir).load_examples()
    return [{"query": q["query"], "relevant": [q["item_id"]]} for q in eval_sample(valid, count, seed=0)]


def _recall(answer: Callable[[str], list[str]], queries: Sequence[dict[str, Any]]) -> tuple[float, float]:
    """(mean Recall@10, p50 seconds per query)."""
    recalls, seconds = [], []
    for query in queries:
        started = time.perf_counter()
        ranked = answer(query["query"])
        seconds.append(time.perf_counter() - started)
        recalls.append(query_metrics(ranked, query["relevant"], TOP_K)["recall@10"])
    return statistics.fmean(recalls), statistics.median(seconds)


def run(
    bundle: Path,
    run_dir: Path,
    beam_counts: Sequence[int],
    held_out: int,
    precision: str = "auto",
    first_levels: Sequence[int] = (0,),
) -> dict[str, Any]:
    from app.inference.model_loading import load_recommender_model

    loaded = load_recommender_model(bundle, BASE_MODELS_DIR, "auto", precision=precision)
    decoder = loaded.decoder()
    item_of = dict(zip(loaded.ids, loaded.lexical.item_ids, strict=True))
    sets = {"heldout": _held_out(run_dir, held_out), "unseen": read_jsonl(DEFAULT_OUT)}
    rows = []
    for beams, first_level in [(b, f) for b in beam_counts for f in first_levels]:
        decoder.first_level_beams = first_level or None

        def answer(text: str, beams: int = beams) -> list[str]:
            found = decoder.decode([text], num_beams=beams, top_k=TOP_K)[0]
            return [item_of[c.semantic_id] for c in found]

        row: dict[str, Any] = {
            "precision": loaded.precision,
            "beams": beams,
            "first_level": first_level or beams,
        }
        for name, queries in sets.items():
            recall, p50 = _recall(answer, queries)
            row[f"{name}_recall@10"], row[f"{name}_p50_ms"] = round(recall, 4), round(1000 * p50, 1)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return {"bundle": loaded.manifest.bundle_id, "precision": loaded.precision, "rows": rows}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=bundle_dir_for("demo"))
    parser.add_argument("--run-dir", type=Path, default=RunLayout.for_profile("demo").folder)
    parser.add_argument("--beams", default="5,10,16,20,32", help="comma-separated beam counts")
    parser.add_argument("--held-out", type=int, default=300, help="held-out phrasings to ask")
    parser.add_argument("--precisions", default="auto", help="comma-separated: auto bf16 fp16-weights fp32")
    parser.add_argument(
        "--first-level", default="0", help="comma-separated first-level widths (0: as many as beams)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results/beam_width.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    counts = [int(part) for part in args.beams.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        print("error: --beams takes positive comma-separated counts, e.g. 5,10,20", file=sys.stderr)
        return 2
    precisions = [part.strip() for part in args.precisions.split(",") if part.strip()]
    first_levels = [int(part) for part in args.first_level.split(",") if part.strip()]
    results = [
        run(args.bundle, args.run_dir, counts, args.held_out, precision, first_levels)
        for precision in precisions
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = results[0] if len(results) == 1 else {"command": " ".join(sys.argv), "runs": results}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
