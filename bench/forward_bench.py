"""The search's forward and the service's threading, side by side in one run, one query at a time.

    .venv/bin/python -m bench.forward_bench --bundle artifacts/bundles/demo

1. The model's forward, three ways over the same weights, interleaved query by query in both model
   modes (``generative``: the constrained beam search; ``hybrid``: with the lexical and dense finds scored
   in it): transformers' ``LlamaModel``; our own forward (``semantic_ids.llama_body``: q/k/v and gate/up
   joined) with the weights as they are; and with the weights laid out for oneDNN once (what the service
   runs). On a CPU where the service stores the weights in fp16 (AVX2 without native bf16): transformers'
   forward over fp16-stored layers, ours in fp32 laid out for oneDNN, ours over fp16 weights (served).
   p50 ms, Recall@10 on the unseen queries, and the share of queries whose ten IDs come out in the same
   order as through transformers.
2. Threads: hybrid p50 on the calling thread; then on a second thread (from then on two threads have run
   torch, each with its OpenMP team); then on the calling thread again. The service runs all torch work on
   one thread (``app/service.py``) because of what this shows on a 2-core CPU.

Writes ``bench/results/forward.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.relevance_metrics import query_metrics
from bench.unseen_queries import DEFAULT_OUT
from training.io import read_jsonl
from training.run_layout import BASE_MODELS_DIR, bundle_dir_for

TOP_K = 10
BEAMS = 10
MODES = ("generative", "hybrid")


def _p50_ms(samples: Sequence[float]) -> float:
    return round(1000 * statistics.median(samples), 1)


def _served_ways(bundle: Path) -> tuple[Any, dict[str, tuple[Any, Any]]]:
    """The loaded bundle and the ways to run its model: name -> (model, body or None for transformers').

    Where the service runs bf16 or fp32: transformers' forward, ours with the weights as loaded, ours with
    them laid out for oneDNN (served). Where it stores the weights in fp16 (AVX2 CPUs without native bf16):
    transformers' forward over fp16-stored layers (served before), ours in fp32 laid out for oneDNN (what
    ``SEMID_PRECISION=fp32`` serves), ours over fp16 weights (served).
    """
    import torch

    from app.inference.model_loading import load_recommender_model
    from semantic_ids.causal_lm import inference_precision, store_linear_weights_fp16
    from semantic_ids.llama_body import LlamaBody

    served_precision = inference_precision(torch.device("cpu"))
    fp16 = served_precision == "fp16-weights"
    loaded = load_recommender_model(
        bundle, BASE_MODELS_DIR, "cpu", own_forward=False, precision="fp32" if fp16 else "auto"
    )
    model = loaded.model
    plain = LlamaBody.of(model, pack=False)
    if plain is None:
        raise SystemExit(
            f"error: bundle {bundle}'s model is not a plain Llama: there is no own forward to compare"
        )
    if not fp16:
        return loaded, {
            "transformers": (model, None),
            "own": (model, plain),
            "own_packed": (model, LlamaBody.of(model)),
        }
    stored_fp16 = copy.deepcopy(model)
    store_linear_weights_fp16(stored_fp16.get_decoder())
    return loaded, {
        "transformers": (stored_fp16, None),
        "own_fp32_packed": (model, LlamaBody.of(model)),
        "own_fp16": (model, LlamaBody.of(model, fp16_weights=True)),
    }


def forwards(bundle: Path, queries: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], Callable[[str], Any]]:
    """Part 1; also returns the service's hybrid ranking (the last way, what it serves) for part 2."""
    from semantic_ids.decoding import ConstrainedDecoder
    from semantic_ids.hybrid import HybridRanker

    loaded, ways = _served_ways(bundle)
    variants = list(ways)
    rankers = {
        name: HybridRanker(
            ConstrainedDecoder(model, loaded.tokenizer, loaded.trie, body=body),
            loaded.lexical,
            loaded.ids,
            loaded.fusion,
            loaded.dense,
        )
        for name, (model, body) in ways.items()
    }
    item_of = dict(zip(loaded.ids, loaded.lexical.item_ids, strict=True))
    for ranker in rankers.values():  # warm-up: first calls allocate
        ranker.rank([queries[0]["query"]], TOP_K, "hybrid", num_beams=BEAMS)
    seconds: dict[tuple[str, str], list[float]] = {(v, m): [] for v in variants for m in MODES}
    recalls: dict[tuple[str, str], list[float]] = {(v, m): [] for v in variants for m in MODES}
    same: dict[tuple[str, str], int] = {(v, m): 0 for v in variants for m in MODES}
    for query in queries:
        for mode in MODES:
            answers = {}
            for variant in variants:
                started = time.perf_counter()
                found = rankers[variant].rank([query["query"]], TOP_K, mode, num_beams=BEAMS)[0]
                seconds[variant, mode].append(time.perf_counter() - started)
                answers[variant] = [item_of[r.semantic_id] for r in found]
                recalls[variant, mode].append(
                    query_metrics(answers[variant], query["relevant"], TOP_K)["recall@10"]
                )
                same[variant, mode] += answers[variant] == answers["transformers"]
    rows = []
    for mode in MODES:
        base = statistics.median(seconds["transformers", mode])
        for variant in variants:
            rows.append(
                {
                    "mode": mode,
                    "forward": variant,
                    "p50_ms": _p50_ms(seconds[variant, mode]),
                    "time_vs_transformers": round(statistics.median(seconds[variant, mode]) / base, 3),
                    "recall@10": round(statistics.fmean(recalls[variant, mode]), 4),
                    "same_ids_and_order_as_transformers": round(same[variant, mode] / len(queries), 3),
                }
            )
    served_name = variants[-1]
    served_body = ways[served_name][1]
    served = rankers[served_name]
    result = {
        "served_precision": "fp16-weights" if served_name == "own_fp16" else loaded.precision,
        "served_weights": served_body.weights if served_body is not None else None,
        "rows": rows,
    }
    return result, lambda text: served.rank([text], TOP_K, "hybrid", num_beams=BEAMS)


def threads(answer: Callable[[str], Any], texts: Sequence[str]) -> dict[str, float]:
    """Part 2: the same hybrid queries on this thread, on a second one, then on this one again."""

    def p50(call: Callable[[str], Any]) -> float:
        samples = []
        for text in texts:
            started = time.perf_counter()
            call(text)
            samples.append(time.perf_counter() - started)
        return _p50_ms(samples)

    alone = p50(answer)
    with ThreadPoolExecutor(max_workers=1) as second:
        on_second = p50(lambda text: second.submit(answer, text).result())
        after = p50(answer)  # the second thread (and its OpenMP team) still alive
    return {
        "one_thread_ran_torch_p50_ms": alone,
        "on_a_second_thread_p50_ms": on_second,
        "first_thread_again_p50_ms": after,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=bundle_dir_for("demo"))
    parser.add_argument("--queries", type=Path, default=DEFAULT_OUT, help="unseen queries (JSONL)")
    parser.add_argument("--count", type=int, default=120, help="queries to ask (the file's first)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results/forward.json"))
    args = parser.parse_args(argv)
    if not (args.bundle / "manifest.json").is_file():
        print(
            f"error: no bundle at {args.bundle}: build one with `semid pipeline --profile demo`",
            file=sys.stderr,
        )
        return 2
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    queries = read_jsonl(args.queries)[: args.count]
    result, served = forwards(args.bundle, queries)
    for row in result["rows"]:
        print(json.dumps(row), flush=True)
    result["threads"] = threads(served, [query["query"] for query in queries[:60]])
    print(json.dumps(result["threads"]), flush=True)
    result.update(
        command=" ".join(["python -m bench.forward_bench", *(argv if argv is not None else sys.argv[1:])]),
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        machine={"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
        queries=f"{args.queries} (first {len(queries)})",
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
