"""The service's query embedding, side by side in one run: MiniLM as sentence-transformers runs it, and as
the service runs it (MiniLM's steps run directly, its linear layers holding fp16 weights where fbgemm runs
them and laid out for oneDNN elsewhere, ``text_encoder.encoder_for``).

    .venv/bin/python -m bench.query_encoder [--queries bench/queries/demo_unseen.jsonl] [--rounds 3]

One query at a time, the two interleaved query by query, ``--rounds`` passes over the queries: p50 ms per
pass and the largest difference between the two vectors of a query. Writes
``bench/results/query_encoder.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.child_runs import run_header, write_result
from bench.unseen_queries import DEFAULT_OUT
from training.io import read_jsonl


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--queries", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results/query_encoder.json"))
    args = parser.parse_args(argv)
    import torch

    from semantic_ids.causal_lm import flush_denormals
    from semantic_ids.text_encoder import MINILM, SentenceEncoder, encoder_for, load_minilm

    flush_denormals()  # as the service does
    torch.set_num_threads(args.threads)
    queries = [str(row["query"]) for row in read_jsonl(args.queries)]
    ways = {
        "sentence_transformers": SentenceEncoder(load_minilm("cpu"), MINILM),
        "served": encoder_for(MINILM),
    }
    for query in queries[:10]:  # first calls allocate
        for encoder in ways.values():
            encoder.encode([query])
    rounds, difference = [], 0.0
    for _ in range(args.rounds):
        taken: dict[str, list[float]] = {name: [] for name in ways}
        for query in queries:
            vectors = []
            for name, encoder in ways.items():
                started = time.perf_counter()
                vectors.append(encoder.encode([query]))
                taken[name].append(time.perf_counter() - started)
            difference = max(difference, float(np.abs(vectors[0] - vectors[1]).max()))
        rounds.append({name: round(1000 * statistics.median(values), 2) for name, values in taken.items()})
        print(rounds[-1], flush=True)
    result = {
        **run_header("bench.query_encoder", argv),
        "queries": len(queries),
        "threads": args.threads,
        "p50_ms_per_round": rounds,
        "max_abs_difference": difference,
    }
    write_result(args.out, result)
    print(f"largest difference between the vectors: {difference:.2e}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
