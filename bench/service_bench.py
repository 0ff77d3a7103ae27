"""Service benchmark: the HTTP service and its decoder, measured side by side in one run.

    .venv/bin/python -m bench.service_bench --bundle artifacts/bundles/demo

1. cold start: ``semid-service serve`` process start -> /readyz 200 (PostgreSQL catalogue, or SQLite
   with ``--sqlite`` where no PostgreSQL server runs, e.g. on a GPU machine);
2. /recommend latency p50/p95 (k=10, 10 beams) through that real uvicorn server, one client;
3. throughput at concurrency 1, 4, 8, 16 (``--concurrency``), with micro-batching and without (a second
   server, batch size 1);
4. /items p50/p95 (compact IDs and item ids) against PostgreSQL;
5. in process: constrained vs unconstrained beam search with the same beams (time ratio, valid IDs);
6. a dense-retrieval baseline (MiniLM query embedding + cosine over the catalogue), per query.

Servers run one at a time and the in-process parts after them, so no two measurements share the CPU.
Prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.db import create_db_engine, load_catalogue
from app.db.migrate import upgrade
from semantic_ids.bundle import MANIFEST, Manifest, read_catalogue, read_manifest
from semantic_ids.ids import SemanticId
from training.run_layout import BASE_MODELS_DIR, RunLayout, bundle_dir_for

logger = logging.getLogger("bench.service_bench")

CONCURRENCY_LEVELS = (1, 4, 8, 16)
MIN_LEVEL_REQUESTS = 32  # requests per concurrency level, at least
BENCH_DATABASE = "semid_bench"
PARTS = ("http", "decoding", "dense")


@dataclass(frozen=True)
class BenchConfig:
    bundle_dir: Path
    base_models_dir: Path
    postgres_admin_url: str | None  # None: a fresh SQLite file
    queries_file: Path | None
    latency_requests: int
    requests_per_client: int
    items_requests: int
    decode_queries: int
    port: int
    out: Path
    parts: tuple[str, ...]
    concurrency: tuple[int, ...] = CONCURRENCY_LEVELS


def percentiles(samples_s: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "mean_ms": round(float(ms.mean()), 2),
        "n": len(ms),
    }


# --- inputs ---------------------------------------------------------------------------------------


def bench_queries(config: BenchConfig, items: list[dict[str, Any]], count: int) -> tuple[list[str], str]:
    """Realistic queries: ``--queries``, else the profile's unseen-query set, else its held-out examples,
    else queries made from catalogue fields. Any JSONL whose rows carry a "query" works."""
    profile = read_manifest(config.bundle_dir).catalogue.profile
    candidates = [
        config.queries_file,
        Path("bench/queries") / f"{profile}_unseen.jsonl",
        RunLayout.for_profile(profile).examples,
    ]
    for path in candidates:
        if path is not None and path.is_file():
            rows = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
            queries = [r["query"] for r in rows if "query" in r and r.get("split", "valid") == "valid"]
            if queries:
                random.Random(0).shuffle(queries)
                return [queries[i % len(queries)] for i in range(count)], str(path)
    rng = random.Random(0)
    made = []
    for item in rng.sample(items, min(count, len(items))):
        fields = item["fields"]
        genre = (fields.get("genres") or ["film"])[0].lower()
        who = fields.get("director") or (fields.get("cast") or ["someone"])[0]
        made.append(f"a {genre} film from {fields.get('year', 'the past')} by {who}")
    return made, "made from catalogue fields"


def prepare_database(admin_url: str | None, bundle_dir: Path, manifest: Manifest) -> str:
    """A fresh database holding the bundle's catalogue; returns its URL. ``admin_url``: a PostgreSQL
    server where the bench may (re)create its database; None: a new SQLite file."""
    if admin_url is None:
        url = f"sqlite:///{tempfile.mkdtemp(prefix='semid-bench-')}/{BENCH_DATABASE}.db"
    else:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{BENCH_DATABASE}"'))
        admin.dispose()
        url = make_url(admin_url).set(database=BENCH_DATABASE).render_as_string(hide_password=False)
    upgrade(url)
    engine = create_db_engine(url)
    try:
        load_catalogue(
            engine,
            read_catalogue(bundle_dir),
            manifest.catalogue.content_hash,
            scheme=manifest.semantic_ids.scheme,
        )
    finally:
        engine.dispose()
    return url


# --- the real server, in its own process ----------------------------------------------------------


@contextmanager
def served(config: BenchConfig, database_url: str, port: int, **env: str) -> Iterator[tuple[str, float]]:
    """Start ``semid-service serve``; yield (base URL, seconds from process start to /readyz 200)."""
    with served_process(config, database_url, port, **env) as (base_url, cold_start_s, _):
        yield base_url, cold_start_s


@contextmanager
def served_process(
    config: BenchConfig, database_url: str, port: int, **env: str
) -> Iterator[tuple[str, float, subprocess.Popen[bytes]]]:
    """``served``, also yielding the server's process (to read its memory)."""
    command = [
        sys.executable, "-m", "app.cli",  # what the semid-service script runs, where no script is installed
        "serve",
        "--bundle", str(config.bundle_dir),
        "--base-models-dir", str(config.base_models_dir),
        "--database-url", database_url,
        "--port", str(port),
    ]  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile("w+", prefix="semid-serve-", suffix=".log", delete=False)  # noqa: SIM115
    started = time.perf_counter()
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    try:
        cold_start_s = wait_ready(base_url, process, log.name, started)
        yield base_url, cold_start_s, process
    finally:
        process.terminate()
        process.wait(60)
        log.close()


def wait_ready(base_url: str, process: subprocess.Popen[bytes], log_path: str, started: float) -> float:
    """Seconds from ``started`` to the server's /readyz 200; the log's tail if it exits, or after 300 s."""
    with httpx.Client(base_url=base_url, timeout=2) as client:
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                tail = Path(log_path).read_text()[-2000:]
                raise RuntimeError(f"the server exited ({process.returncode}):\n{tail}")
            if time.perf_counter() - started > 300:
                raise RuntimeError(f"the server was not ready after 300 s (log: {log_path})")
            time.sleep(0.05)


def recommend_latency(base_url: str, queries: Sequence[str], count: int) -> dict[str, dict[str, Any]]:
    """One client, one request at a time: what a single user sees. Each query is asked in ``hybrid`` (the
    default) and then in ``generative``, so both modes see the same moments of the machine."""
    samples: dict[str, list[float]] = {"hybrid": [], "generative": []}
    with httpx.Client(base_url=base_url, timeout=120) as client:
        client.post("/recommend", json={"query": queries[0], "k": 10}).raise_for_status()  # connection warm
        for index in range(count):
            for mode, taken in samples.items():
                begun = time.perf_counter()
                client.post(
                    "/recommend", json={"query": queries[index % len(queries)], "k": 10, "mode": mode}
                ).raise_for_status()
                taken.append(time.perf_counter() - begun)
    return {mode: percentiles(taken) for mode, taken in samples.items()}


def _client_session(base_url: str, queries: Sequence[str]) -> tuple[list[float], list[int]]:
    samples, statuses = [], []
    with httpx.Client(base_url=base_url, timeout=300) as client:
        for query in queries:
            begun = time.perf_counter()
            statuses.append(client.post("/recommend", json={"query": query, "k": 10}).status_code)
            samples.append(time.perf_counter() - begun)
    return samples, statuses


def throughput(base_url: str, queries: Sequence[str], concurrency: int, per_client: int) -> dict[str, Any]:
    """``concurrency`` keep-alive clients, each sending ``per_client`` requests back to back."""
    plan = [
        [queries[(c * per_client + i) % len(queries)] for i in range(per_client)] for c in range(concurrency)
    ]
    begun = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        sessions = list(pool.map(lambda qs: _client_session(base_url, qs), plan))
    wall = time.perf_counter() - begun
    samples = [s for session in sessions for s in session[0]]
    statuses = [s for session in sessions for s in session[1]]
    return {
        "concurrency": concurrency,
        "requests": len(samples),
        "requests_per_s": round(len(samples) / wall, 3),
        "non_200": sum(status != 200 for status in statuses),
        **percentiles(samples),
    }


def items_latency(base_url: str, items: Sequence[dict[str, Any]], count: int) -> dict[str, Any]:
    rng = random.Random(1)
    by_semantic_id: list[float] = []
    by_item_id: list[float] = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for _ in range(count):
            item = rng.choice(items)
            compact = SemanticId(tuple(item["semantic_id"])).compact
            for path, samples in (
                (f"/items/{compact}", by_semantic_id),
                (f"/items/by-item-id/{item['item_id']}", by_item_id),
            ):
                begun = time.perf_counter()
                client.get(path).raise_for_status()
                samples.append(time.perf_counter() - begun)
    return {"by_semantic_id": percentiles(by_semantic_id), "by_item_id": percentiles(by_item_id)}


def server_metrics(base_url: str) -> dict[str, float]:
    wanted = ("semid_invalid_decodes_total", "semid_decode_batch_size_sum", "semid_decode_batch_size_count")
    values = {}
    for line in httpx.get(f"{base_url}/metrics").text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            values[name] = float(value)
    return values


# --- in process: the decoder alone, and the dense baseline ----------------------------------------


def decoding_overhead(config: BenchConfig, queries: Sequence[str]) -> dict[str, Any]:
    """Constrained vs unconstrained beam search, same beams and k, alternating per query."""
    from app.inference.model_loading import load_recommender_model

    decoder = load_recommender_model(config.bundle_dir, config.base_models_dir, "auto").decoder()
    decoder.decode(list(queries[:2]), num_beams=10, top_k=10)  # warm-up
    timings: dict[bool, list[float]] = {True: [], False: []}
    valid_unconstrained = []
    for index, query in enumerate(queries):
        order = (True, False) if index % 2 == 0 else (False, True)
        for constrained in order:
            begun = time.perf_counter()
            (candidates,) = decoder.decode([query], num_beams=10, top_k=10, constrained=constrained)
            timings[constrained].append(time.perf_counter() - begun)
            if not constrained:
                valid_unconstrained.append(len(candidates))  # the decoder keeps only IDs that exist
    constrained_ms, unconstrained_ms = percentiles(timings[True]), percentiles(timings[False])
    return {
        "constrained": constrained_ms,
        "unconstrained": unconstrained_ms,
        "ratio_p50": round(constrained_ms["p50_ms"] / unconstrained_ms["p50_ms"], 3),
        "ratio_mean": round(constrained_ms["mean_ms"] / unconstrained_ms["mean_ms"], 3),
        "unconstrained_existing_ids_of_10": round(float(np.mean(valid_unconstrained)), 2),
    }


def dense_baseline(manifest: Manifest, queries: Sequence[str]) -> dict[str, Any] | None:
    """MiniLM query embedding + cosine top-10 over the catalogue's vectors, one query at a time."""
    vectors_path = RunLayout.for_profile(manifest.catalogue.profile).embeddings
    if not vectors_path.is_file():
        logger.warning("no %s: skipping the dense baseline", vectors_path)
        return None
    from training.data.embeddings import load_minilm

    item_vectors = np.load(vectors_path)  # (items, 384), L2-normalised
    model = load_minilm()
    model.encode(list(queries[:2]), normalize_embeddings=True)  # warm-up
    samples = []
    for query in queries:
        begun = time.perf_counter()
        vector = model.encode([query], normalize_embeddings=True)[0]  # (384,)
        scores = item_vectors @ vector
        np.argpartition(-scores, 10)[:10]
        samples.append(time.perf_counter() - begun)
    return {"items": int(item_vectors.shape[0]), **percentiles(samples)}


# --- the run --------------------------------------------------------------------------------------


def http_figures(
    config: BenchConfig, database_url: str, queries: list[str], items: list[dict[str, Any]]
) -> dict[str, Any]:
    """Two servers side by side, with and without micro-batching, measured alternately per concurrency level
    (an idle server costs nothing), so both see the same load from anything else on the machine."""
    figures: dict[str, Any] = {}
    with served(config, database_url, config.port) as (batched_url, cold_start_s):
        figures["cold_start_s"] = round(cold_start_s, 2)
        with served(config, database_url, config.port + 1, SEMID_BATCH_MAX_SIZE="1") as (
            unbatched_url,
            cold_s,
        ):
            figures["cold_start_unbatched_server_s"] = round(cold_s, 2)
            latency = recommend_latency(batched_url, queries, config.latency_requests)
            figures["recommend_latency"] = latency["hybrid"]
            figures["recommend_latency_generative"] = latency["generative"]
            figures["items_latency"] = items_latency(batched_url, items, config.items_requests)
            figures["throughput_batched"], figures["throughput_unbatched"] = [], []
            for concurrency in config.concurrency:
                for key, url in (
                    ("throughput_batched", batched_url),
                    ("throughput_unbatched", unbatched_url),
                ):
                    per_client = requests_per_client(config, concurrency)
                    figures[key].append(throughput(url, queries, concurrency, per_client))
            figures["metrics_batched"] = server_metrics(batched_url)
            figures["metrics_unbatched"] = server_metrics(unbatched_url)
    return figures


def requests_per_client(config: BenchConfig, concurrency: int) -> int:
    """``--requests-per-client``, raised so that a level sends ``MIN_LEVEL_REQUESTS`` in all: one client's
    8 requests made its rate hang on a single slow answer (c = 1 read 4.7 req/s in one run, 7.1 in the
    next)."""
    return max(config.requests_per_client, -(-MIN_LEVEL_REQUESTS // concurrency))


def run(config: BenchConfig) -> dict[str, Any]:
    manifest = read_manifest(config.bundle_dir)
    items = list(read_catalogue(config.bundle_dir))
    sent = max(c * requests_per_client(config, c) for c in config.concurrency)
    needed = max(config.latency_requests, config.decode_queries, sent)
    queries, queries_source = bench_queries(config, items, needed)
    results: dict[str, Any] = {
        "command": "python -m bench.service_bench " + " ".join(sys.argv[1:]),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
        },
        "bundle": {
            "id": manifest.bundle_id,
            "items": manifest.catalogue.item_count,
            "codebook_sizes": list(manifest.semantic_ids.codebook_sizes),
            "base_model": manifest.base_model.name,
        },
        "queries": queries_source,
        "settings": {
            "k": 10,
            "num_beams": 10,
            "database": "sqlite" if config.postgres_admin_url is None else "postgresql",
            "concurrency": list(config.concurrency),
        },
    }
    if "http" in config.parts:
        results |= http_figures(
            config, prepare_database(config.postgres_admin_url, config.bundle_dir, manifest), queries, items
        )
    if "decoding" in config.parts:
        results["decoding"] = decoding_overhead(config, queries[: config.decode_queries])
    if "dense" in config.parts:
        results["dense_baseline"] = dense_baseline(manifest, queries[: config.decode_queries])
    return results


Row = tuple[str, str, str]  # what, figure, target or comparison


def _http_rows(results: dict[str, Any]) -> list[Row]:
    latency, items = results["recommend_latency"], results["items_latency"]
    by_sid = items["by_semantic_id"]
    database = "SQLite" if results["settings"]["database"] == "sqlite" else "PostgreSQL"
    rows = [
        (
            "/recommend, 1 client (k=10, 10 beams)",
            f"p50 {latency['p50_ms']} ms, p95 {latency['p95_ms']} ms",
            "",
        )
    ]
    if generative := results.get("recommend_latency_generative"):
        rows.append((
            "/recommend mode=generative, 1 client",
            f"p50 {generative['p50_ms']} ms, p95 {generative['p95_ms']} ms",
            f"hybrid / generative {latency['p50_ms'] / generative['p50_ms']:.2f}x at p50",
        ))  # fmt: skip
    for batched, unbatched in zip(
        results["throughput_batched"], results["throughput_unbatched"], strict=True
    ):
        rows.append((
            f"throughput, concurrency {batched['concurrency']}",
            f"{batched['requests_per_s']} req/s batched vs {unbatched['requests_per_s']} unbatched",
            f"p50 {batched['p50_ms']} vs {unbatched['p50_ms']} ms",
        ))  # fmt: skip
    invalid = str(results["metrics_batched"]["semid_invalid_decodes_total"])
    rows += [
        (
            f"/items/{{semantic_id}} ({database})",
            f"p50 {by_sid['p50_ms']} ms, p95 {by_sid['p95_ms']} ms",
            "target <= 5 ms",
        ),
        (f"/items/by-item-id/{{item_id}} ({database})", f"p50 {items['by_item_id']['p50_ms']} ms", ""),
        ("cold start: process start -> ready", f"{results['cold_start_s']} s", "target <= 15 s"),
        ("invalid decodes (server counter)", invalid, "must be 0"),
    ]
    return rows


def table(results: dict[str, Any]) -> str:
    rows = _http_rows(results) if "recommend_latency" in results else []
    if decoding := results.get("decoding"):
        constrained, unconstrained = decoding["constrained"]["p50_ms"], decoding["unconstrained"]["p50_ms"]
        rows.append((
            "constrained / unconstrained decode (same beams)",
            f"{decoding['ratio_p50']}x at p50 ({constrained} vs {unconstrained} ms)",
            "target <= 1.10",
        ))  # fmt: skip
        existing = str(decoding["unconstrained_existing_ids_of_10"])
        rows.append(("unconstrained: existing IDs among top 10", existing, "constrained: 10"))
    if dense := results.get("dense_baseline"):
        rows.append(
            ("dense retrieval baseline (MiniLM + cosine), per query", f"p50 {dense['p50_ms']} ms", "")
        )
    width = max((len(row[0]) for row in rows), default=0)
    return "\n".join(f"{name:<{width}}  {value}  {note}".rstrip() for name, value, note in rows)


def parse_args(argv: Sequence[str] | None = None) -> BenchConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bundle", type=Path, default=bundle_dir_for("demo"))
    parser.add_argument("--base-models-dir", type=Path, default=BASE_MODELS_DIR)
    parser.add_argument(
        "--postgres-admin-url",
        default=os.environ.get(
            "SEMID_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
        help=f"a server where the bench may (re)create the database {BENCH_DATABASE!r}",
    )
    parser.add_argument(
        "--sqlite", action="store_true", help="serve the catalogue from a new SQLite file, not PostgreSQL"
    )
    parser.add_argument(
        "--concurrency",
        default=",".join(map(str, CONCURRENCY_LEVELS)),
        help="comma-separated client counts for the throughput table",
    )
    parser.add_argument(
        "--queries", type=Path, default=None, help="examples JSONL (valid split queries are used)"
    )
    parser.add_argument("--latency-requests", type=int, default=30)
    parser.add_argument("--requests-per-client", type=int, default=8)
    parser.add_argument("--items-requests", type=int, default=200)
    parser.add_argument("--decode-queries", type=int, default=30)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--out", type=Path, default=Path("bench/results/service.json"))
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)} (default: all)"
    )
    args = parser.parse_args(argv)
    return BenchConfig(
        bundle_dir=args.bundle,
        base_models_dir=args.base_models_dir,
        postgres_admin_url=None if args.sqlite else args.postgres_admin_url,
        queries_file=args.queries,
        latency_requests=args.latency_requests,
        requests_per_client=args.requests_per_client,
        items_requests=args.items_requests,
        decode_queries=args.decode_queries,
        port=args.port,
        out=args.out,
        parts=tuple(part for part in args.parts.split(",") if part in PARTS),
        concurrency=tuple(int(level) for level in args.concurrency.split(",")),
    )


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The figures the serving targets name, under fixed keys, in front of the detail."""
    summary: dict[str, Any] = {
        "recommend_p50_ms": results["recommend_latency"]["p50_ms"],
        "recommend_p95_ms": results["recommend_latency"]["p95_ms"],
        "recommend_generative_p50_ms": results.get("recommend_latency_generative", {}).get("p50_ms"),
        "throughput_rps": {str(r["concurrency"]): r["requests_per_s"] for r in results["throughput_batched"]},
        "cold_start_s": results["cold_start_s"],
    }
    if "decoding" in results:
        summary["constrained_over_unconstrained"] = results["decoding"]["ratio_p50"]
    return summary | results


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = parse_args(argv)
    if not (config.bundle_dir / MANIFEST).is_file():
        sys.exit(f"error: no bundle at {config.bundle_dir}: build one with `semid pipeline --profile demo`")
    results = headline(run(config))
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwrote {config.out}")


if __name__ == "__main__":
    main()
