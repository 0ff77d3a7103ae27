"""The whole product at 10^3 to 10^6 items: catalogue -> IDs -> bundle -> database -> service, per size.

    .venv/bin/python -m bench.scale_service --sizes 1000,10000,100000

For each size, in a process of its own (so memory is that size's):

1. a synthetic film-like catalogue (``bench.synthetic_catalogue``: the films' field distributions, unique
   titles);
2. item vectors: synthetic (``bench.scale_ids.synthetic_vectors``: topics of 40 items with the spread of
   real neighbours), put in the run's embedding cache under each item text's content key, so the
   pipeline's embedding stage finds them instead of running MiniLM (embedding 10^6 texts takes hours on 2
   cores). The dense source's *answers* are therefore not meaningful here, its costs are;
3. ``semid pipeline`` on that catalogue (``run_pipeline``, the catalogue's own profile: the preset nearest
   its size), fine-tuning for one step in fp32 on one training query per item: the model is untrained
   above the demo, and a search's cost does not depend on what the model learned (the same beams, the
   same trie walk);
4. the service (``semid-service serve``, its own process, PostgreSQL): the catalogue loaded into the
   database, cold start to /readyz, /recommend p50 in each mode (one client, queries made from catalogue
   fields), /items p50, and the server's resident memory after the requests.

Records per size: every pipeline stage's seconds, the ID scheme, bytes on disk of the trie's IDs, the
lexical index and the dense vectors, the database load, and the service's figures. Appends the rows to
``bench/results/scale.json`` under ``service`` (issue 26's table; ``bench.scale_ids`` fills ``id_stage``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from bench.child_runs import child_row, run_header, write_result
from bench.scale_ids import synthetic_vectors
from bench.service_bench import BenchConfig, items_latency, percentiles, prepare_database, served_process

OUT = Path("bench/results/scale.json")
WORK = Path("artifacts/scale")
MODES = ("generative", "hybrid", "lexical")
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def build(count: int, work: Path) -> dict[str, Any]:
    """Steps 1-3 for one size, in this process; returns what they cost."""
    from bench.synthetic_catalogue import synthetic_items, write_catalogue
    from training.data.catalogue import read_catalogue
    from training.data.embeddings import EmbeddingCache, content_key
    from training.data.item_text import render_item_text
    from training.pipeline.run import pipeline_inputs, run_pipeline
    from training.profiles import pipeline_config
    from training.run_layout import RunLayout

    seconds: dict[str, float] = {}
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    catalogue = work / "catalogue.jsonl"
    started = time.perf_counter()
    write_catalogue(synthetic_items(count), catalogue)
    seconds["synthetic_catalogue"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    keys = [content_key(render_item_text(item)) for item in read_catalogue(catalogue)]
    EmbeddingCache(work / "embedding_cache").add(keys, synthetic_vectors(count))
    seconds["synthetic_vectors"] = round(time.perf_counter() - started, 2)
    name = f"scale-{count}"
    config = pipeline_config(
        name, count, time_budget_s=0, max_steps=1, precision="fp32", eval_every=0, eval_queries=20
    )
    # One training query per item, no attribute examples: one step reads a batch of them, and at 10^6
    # items the profile's 12 + 2 per item would be 14 million examples written for nothing.
    config = replace(
        config,
        examples=replace(config.examples, train_queries_per_item=1, attribute_examples_per_item=0),
    )
    layout = RunLayout(work / "run")
    inputs = pipeline_inputs(layout, name, jsonl=catalogue)
    report = run_pipeline(
        config,
        inputs=inputs,
        run_dir=layout.folder,
        bundle_dir=work / "bundle",
        cache_dir=work / "embedding_cache",
    )
    assert report is not None  # one process: rank 0
    return {
        "seconds": {**seconds, **{f"pipeline_{k}": v for k, v in report["timings_s"].items()}},
        "peak_rss_mib_build": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def bundle_bytes(bundle: Path) -> dict[str, int]:
    """Bytes on disk of the bundle's parts, by file name (the model's files summed)."""
    sizes: dict[str, int] = {}
    for path in sorted(bundle.rglob("*")):
        if path.is_file():
            part = path.relative_to(bundle).parts[0]
            sizes[part] = sizes.get(part, 0) + path.stat().st_size
    return sizes


def catalogue_queries(rows: Sequence[dict[str, Any]], count: int) -> list[str]:
    """Queries of the kinds people write, made from random catalogue rows: a title, a genre with a
    year and an actor, a director's surname with a genre."""
    rng = random.Random(0)
    queries: list[str] = []
    for row in rng.sample(rows, min(count, len(rows))):
        fields = row["fields"]
        genre = (fields.get("genres") or ["film"])[0].lower()
        cast = fields.get("cast") or []
        director = str(fields.get("director") or "").split(",")[0].strip()
        choice = len(queries) % 3
        if choice == 0:
            queries.append(str(row["title"]))
        elif choice == 1 and cast:
            queries.append(f"{genre} from {fields.get('year', 'the 90s')} with {cast[0]}")
        else:
            queries.append(f"{genre} by {director.split(' ')[-1] or 'anyone'}")
    return queries


def serve(work: Path, queries_count: int, port: int) -> dict[str, Any]:
    """Step 4: the service over the built bundle."""
    from semantic_ids.bundle import read_catalogue, read_manifest
    from training.run_layout import BASE_MODELS_DIR

    bundle = work / "bundle"
    manifest = read_manifest(bundle)
    started = time.perf_counter()
    database_url = prepare_database(POSTGRES, bundle, manifest)
    database_load_s = time.perf_counter() - started
    config = BenchConfig(
        bundle_dir=bundle,
        base_models_dir=BASE_MODELS_DIR,
        postgres_admin_url=POSTGRES,
        queries_file=None,
        latency_requests=queries_count,
        requests_per_client=0,
        items_requests=100,
        decode_queries=0,
        port=port,
        out=OUT,
        parts=("http",),
    )
    rows = list(read_catalogue(bundle))
    queries = catalogue_queries(rows, queries_count)
    with served_process(config, database_url, port) as (base_url, cold_start_s, process):
        samples: dict[str, list[float]] = {mode: [] for mode in MODES}
        with httpx.Client(base_url=base_url, timeout=120) as client:
            for mode in MODES:  # first calls allocate
                client.post(
                    "/recommend", json={"query": queries[0], "k": 10, "mode": mode}
                ).raise_for_status()
            for query in queries:
                for mode in MODES:  # interleaved: every mode sees the same moments of the machine
                    begun = time.perf_counter()
                    client.post("/recommend", json={"query": query, "k": 10, "mode": mode}).raise_for_status()
                    samples[mode].append(time.perf_counter() - begun)
        items = items_latency(base_url, rows, 100)
        memory = _memory_mib(process.pid)
    return {
        "database_load_s": round(database_load_s, 2),
        "cold_start_s": round(cold_start_s, 2),
        "recommend": {mode: percentiles(taken) for mode, taken in samples.items()},
        "items_by_semantic_id": items["by_semantic_id"],
        "service_memory_mib": memory,
        "queries": f"{len(queries)} made from catalogue rows (titles; genre + year + actor; genre + surname)",
    }


def _memory_mib(pid: int) -> dict[str, float]:
    """The process's resident memory now and at its peak (Linux /proc)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = round(int(value.split()[0]) / 1024, 1)
    return {"resident": fields.get("VmRSS", 0.0), "peak": fields.get("VmHWM", 0.0)}


def measure(count: int, queries_count: int, port: int, built: dict[str, Any] | None) -> dict[str, Any]:
    """One size's row; ``built``: what an earlier run's build of that size cost, whose bundle in
    ``WORK/<size>`` is served again instead of built (``--serve-only``)."""
    from semantic_ids.bundle import read_manifest

    work = WORK / str(count)
    built = build(count, work) if built is None else built
    manifest = read_manifest(work / "bundle")
    row = {
        "items": count,
        "codebook_sizes": list(manifest.semantic_ids.scheme.codebook_sizes),
        **built,
        "bundle_bytes": bundle_bytes(work / "bundle"),
        **serve(work, queries_count, port),
    }
    generative = row["recommend"]["generative"]["p50_ms"]
    row["generative_p50_ms"] = generative
    return row


def _earlier_build(out: Path, count: int) -> dict[str, Any]:
    """The build figures of ``count``'s row in ``out``; exits when there is no such row or bundle."""
    rows = json.loads(out.read_text()).get("service", {}).get("rows", []) if out.is_file() else []
    found = [row for row in rows if row["items"] == count]
    if not found or not (WORK / str(count) / "bundle").is_dir():
        raise SystemExit(f"error: --serve-only: no earlier build of {count} items in {out} and {WORK}")
    return {key: found[0][key] for key in ("seconds", "peak_rss_mib_build") if key in found[0]}


def _record(out: Path, row: dict[str, Any], command: str) -> None:
    """Put one size's row into ``out`` (key ``service``), replacing an earlier row of that size: each
    size is written as soon as it is measured, and sizes measured in other runs stay."""
    result = json.loads(out.read_text()) if out.is_file() else {}
    section = result.setdefault("service", {"rows": []})
    section.update(
        command=command,
        vectors="synthetic (bench/scale_ids.py), put in the embedding cache; the model fine-tuned 1 step",
    )
    rows = [old for old in section["rows"] if old["items"] != row["items"]] + [row]
    section["rows"] = sorted(rows, key=lambda old: old["items"])
    smallest = section["rows"][0]["generative_p50_ms"]
    for old in section["rows"]:
        old["generative_p50_vs_smallest"] = round(old["generative_p50_ms"] / smallest, 3)
    write_result(out, result)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated catalogue sizes")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # a child: one size
    parser.add_argument("--queries", type=int, default=60, help="queries asked in each mode")
    parser.add_argument("--port", type=int, default=8931)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--serve-only",
        action="store_true",
        help="serve the bundle an earlier run built (artifacts/scale/<size>) again, with its build figures",
    )
    args = parser.parse_args(argv)
    if args.one is not None:
        import torch

        torch.set_num_threads(args.threads)
        built = _earlier_build(args.out, args.one) if args.serve_only else None
        print(json.dumps(measure(args.one, args.queries, args.port, built)))
        return 0
    try:
        sizes = [int(part) for part in args.sizes.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--sizes takes whole numbers separated by commas, got {args.sizes!r}")
    if not sizes or min(sizes) < 100:
        parser.error("--sizes: each size must be at least 100 items")
    for size in sizes:
        child = [
            sys.executable, "-m", "bench.scale_service", "--one", str(size), "--out", str(args.out),
            "--queries", str(args.queries), "--port", str(args.port), "--threads", str(args.threads),
            *(["--serve-only"] if args.serve_only else []),
        ]  # fmt: skip
        row = child_row(child, f"size {size}", env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        if row is None:
            return 1
        header = run_header("bench.scale_service", argv)
        row.update(measured_at=header["measured_at"], machine=header["machine"])
        _record(args.out, row, header["command"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
