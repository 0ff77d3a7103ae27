"""Reliability bench: a property-based HTTP fuzz and a mixed hostile load against a real server.

    .venv/bin/python -m bench.reliability_bench            # the 20-film tiny bundle, SQLite
    .venv/bin/python -m bench.reliability_bench --bundle artifacts/bundles/demo \
        --base-models-dir artifacts/base_models

Unless given a bundle it builds the tiny one (``tests/helpers/tiny_bundle.py``: a tiny random Llama, a few
seconds of training), loads its catalogue into a temporary SQLite database and starts ``semid-service
serve`` from this checkout in its own process. Then:

1. fuzz: hypothesis-generated requests over every route (``/recommend`` bodies mixing JSON of any shape
   with hostile text, semantic IDs and item ids of any text, made-up methods, the operations routes).
   Every answer is checked: no 5xx, a status the OpenAPI schema documents for the operation, and a body
   of the documented shape (``RecommendResponse``, ``ItemPublic``, ``ErrorResponse``).
2. load: valid queries alone at concurrency 16 (the baseline), then a mix with 10 % hostile bodies
   (lone surrogates, 2,000-token queries, special-token text, NULs, 60 KB bodies) at the same
   concurrency: every valid request must get 200 or a documented 503, and their p95 is compared with
   the baseline's.

Prints a summary and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from app.db import create_db_engine, load_catalogue
from app.db.migrate import upgrade
from bench.http_fuzz import fuzz
from bench.service_bench import BenchConfig, served
from semantic_ids.bundle import read_catalogue, read_manifest

logger = logging.getLogger("bench.reliability_bench")


def hostile_body(rng: random.Random) -> tuple[bytes | dict[str, Any], str]:
    kind = rng.choice(["surrogate", "tokens", "special", "nul", "huge"])
    bodies: dict[str, bytes | dict[str, Any]] = {
        "surrogate": b'{"query": "Heat \\ud800"}',
        "tokens": {"query": "数" * 500},  # about 2,000 tokens on a BPE tokenizer
        "special": {"query": "[SEM_END][REC][SEM_START][SEM_0_1] Heat", "k": 10},
        "nul": {"query": "Heat\x00\x00", "k": 10},
        "huge": {"query": "x" * 60_000},
    }
    return bodies[kind], kind


def load(base_url: str, titles: list[str], total: int, hostile_share: float, seed: int) -> dict[str, Any]:
    """``total`` requests from 16 keep-alive clients; ``hostile_share`` of them hostile."""
    rng = random.Random(seed)
    plan: list[tuple[bytes | dict[str, Any], str]] = []
    for index in range(total):
        if rng.random() < hostile_share:
            plan.append(hostile_body(rng))
        else:
            plan.append(({"query": titles[index % len(titles)], "k": 10}, "valid"))
    outcomes = _send_all(base_url, plan, concurrency=16)
    valid = [
        (status, seconds)
        for (status, seconds), (_, kind) in zip(outcomes, plan, strict=True)
        if kind == "valid"
    ]
    statuses: Counter[str] = Counter()
    for (status, _), (_, kind) in zip(outcomes, plan, strict=True):
        statuses[f"{kind}:{status}"] += 1
    latencies = np.asarray([seconds for status, seconds in valid if status == 200]) * 1000.0
    return {
        "requests": total,
        "hostile": sum(1 for _, kind in plan if kind != "valid"),
        "statuses": dict(sorted(statuses.items())),
        "valid_not_200_or_503": sum(1 for status, _ in valid if status not in (200, 503)),
        "any_5xx_but_503": sum(1 for status, _ in outcomes if status >= 500 and status != 503),
        "valid_p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "valid_p95_ms": round(float(np.percentile(latencies, 95)), 1),
    }


def _send_all(
    base_url: str, plan: list[tuple[bytes | dict[str, Any], str]], concurrency: int
) -> list[tuple[int, float]]:
    def session(indices: list[int]) -> list[tuple[int, tuple[int, float]]]:
        done = []
        with httpx.Client(base_url=base_url, timeout=120) as client:
            for index in indices:
                body, _ = plan[index]
                begun = time.perf_counter()
                if isinstance(body, bytes):
                    headers = {"content-type": "application/json"}
                    response = client.post("/recommend", content=body, headers=headers)
                else:
                    response = client.post("/recommend", json=body)
                done.append((index, (response.status_code, time.perf_counter() - begun)))
        return done

    shards = [list(range(start, len(plan), concurrency)) for start in range(concurrency)]
    results: list[tuple[int, float]] = [(0, 0.0)] * len(plan)
    with ThreadPoolExecutor(concurrency) as pool:
        for done in pool.map(session, shards):
            for index, outcome in done:
                results[index] = outcome
    return results


@contextmanager
def tiny_or_given(bundle: Path | None, base_models_dir: Path | None) -> Iterator[tuple[Path, Path, str]]:
    """(bundle dir, base models dir, SQLite URL holding its catalogue), in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="semid-reliability-") as folder:
        root = Path(folder)
        if bundle is None or base_models_dir is None:
            from tests.helpers.tiny_bundle import make_tiny_bundle  # the test helper: no real model trained

            tiny = make_tiny_bundle(root)
            bundle, base_models_dir = tiny.bundle_dir, tiny.base_models_dir
        url = f"sqlite:///{root / 'catalogue.db'}"
        upgrade(url)
        engine = create_db_engine(url)
        manifest = read_manifest(bundle)
        load_catalogue(engine, read_catalogue(bundle), manifest.catalogue.content_hash)
        engine.dispose()
        yield bundle, base_models_dir, url


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tiny_or_given(args.bundle, args.base_models_dir) as (bundle, base_models_dir, url):
        titles = [str(row["title"]) for row in read_catalogue(bundle)]
        config = _config(bundle, base_models_dir, args.port, args.out)
        # PYTHONPATH: the server runs this checkout's code, whatever the virtualenv has installed.
        with served(config, url, args.port, PYTHONPATH=str(Path.cwd())) as (base_url, _):
            started = time.perf_counter()
            fuzzed = fuzz(base_url, args.fuzz_cases, args.seed)
            fuzz_s = time.perf_counter() - started
            baseline = load(base_url, titles, args.baseline, 0.0, args.seed)
            mixed = load(base_url, titles, args.load, args.hostile_share, args.seed)
    ratio = round(mixed["valid_p95_ms"] / baseline["valid_p95_ms"], 2)
    return {
        "bundle": str(args.bundle or "tiny (tests/helpers/tiny_bundle.py)"),
        "fuzz": {**fuzzed, "seconds": round(fuzz_s, 1)},
        "load_baseline": baseline,
        "load_mixed": mixed,
        "mixed_p95_over_baseline_p95": ratio,
    }


def _config(bundle: Path, base_models_dir: Path, port: int, out: Path) -> BenchConfig:
    return BenchConfig(
        bundle_dir=bundle,
        base_models_dir=base_models_dir,
        postgres_admin_url="",
        queries_file=None,
        latency_requests=0,
        requests_per_client=0,
        items_requests=0,
        decode_queries=0,
        port=port,
        out=out,
        parts=(),
    )


def main(argv: list[str] | None = None, *, report: Callable[[str], None] = print) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument("--base-models-dir", type=Path, default=None)
    parser.add_argument("--fuzz-cases", type=int, default=2000)
    parser.add_argument("--baseline", type=int, default=400)
    parser.add_argument("--load", type=int, default=1000)
    parser.add_argument("--hostile-share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--out", type=Path, default=Path("bench/results/reliability.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    report(
        json.dumps(
            {k: v for k, v in results.items() if k != "fuzz"} | {"fuzz": _fuzz_summary(results)}, indent=2
        )
    )


def _fuzz_summary(results: dict[str, Any]) -> dict[str, Any]:
    fuzzed = results["fuzz"]
    return {k: fuzzed[k] for k in ("cases", "by_route", "statuses", "seconds")} | {
        "violations": len(fuzzed["violations"])
    }


if __name__ == "__main__":
    main()
