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
from urllib.parse import quote

import httpx
import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from app.db import create_db_engine, load_catalogue
from app.db.migrate import upgrade
from app.schemas import ErrorResponse, ItemPublic, RecommendResponse
from bench.service_bench import BenchConfig, served
from semantic_ids.bundle import read_catalogue, read_manifest

logger = logging.getLogger("bench.reliability_bench")

Case = tuple[str, str, bytes | None]  # (method, path, JSON body or None)
HOSTILE_TEXT = [
    "\ud800",
    "Heat \udfff",
    "[SEM_END][REC][SEM_START][SEM_0_1]",
    "a\x00b",
    "\x00",
    "数" * 500,
    "😀" * 300,
    "x" * 2000,
    " \n\t ",
]


def _encode(body: Any) -> bytes:
    """ASCII JSON: lone surrogates travel escaped; infinities as the non-standard ``Infinity``."""
    return json.dumps(body).encode()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
_QUERY = st.one_of(st.text(max_size=80), st.sampled_from(HOSTILE_TEXT), _JSON)
_K = st.one_of(st.integers(-5, 80), _JSON)
_RECOMMEND = st.one_of(
    st.fixed_dictionaries({"query": _QUERY}, optional={"k": _K}),
    st.fixed_dictionaries({"query": _QUERY, "k": _K, "extra": _JSON}),
    _JSON,
).map(lambda body: ("POST", "/recommend", _encode(body)))
_PATH_TEXT = st.one_of(
    st.text(min_size=1, max_size=60), st.sampled_from(["0-0-0", "1-2-3", "٣-١-٢", "01-1-1"])
)
_SEMANTIC = _PATH_TEXT.map(lambda text: ("GET", f"/items/{quote(text, safe='')}", None))
_ITEM_ID = _PATH_TEXT.map(lambda text: ("GET", f"/items/by-item-id/{quote(text, safe='')}", None))
_OPERATIONS = st.tuples(
    st.sampled_from(["GET", "HEAD", "POST", "DELETE", "PATCH", "BREW", "OPTIONS"]),
    st.sampled_from(["/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/recommend", "/", "/x"]),
    st.none(),
)
# Shares of --fuzz-cases; the operations family is small and finite (56 method x path pairs), so it is
# run to exhaustion on top of them.
FUZZ_PLAN = {"recommend": (_RECOMMEND, 0.4), "semantic_id": (_SEMANTIC, 0.3), "item_id": (_ITEM_ID, 0.3)}
FUZZ_PLAN["operations"] = (_OPERATIONS, 0.05)


_OUTSIDE_SCHEMA = {"/docs", "/metrics", "/openapi.json"}  # served, but not API operations
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def _operation(openapi: dict[str, Any], method: str, path: str) -> str | None:
    """The schema's path template that ``path`` falls under, for documented statuses."""
    if path.startswith("/items/by-item-id/"):
        return "/items/by-item-id/{item_id}"
    if path.startswith("/items/"):
        return "/items/{semantic_id}"
    return path if path in openapi["paths"] else None


def check(openapi: dict[str, Any], case: Case, response: httpx.Response) -> str | None:
    """What is wrong with ``response`` to ``case``, or None when it keeps the contract."""
    method, path, _ = case
    status = response.status_code
    if status >= 500:
        return f"{status} {response.text[:200]}"
    if method == "HEAD":  # no body to check
        return None
    if method == "GET" and path in _OUTSIDE_SCHEMA:
        return None if status == 200 else f"unexpected {status}"
    template = _operation(openapi, method, path)
    operation = openapi["paths"].get(template or "", {}).get(method.lower())
    if operation is None:  # an unknown route or method: a JSON 404 / 405
        if method not in _METHODS and status == 400:
            return None  # uvicorn itself refuses some made-up methods before the app sees them
        return None if status in (404, 405) and _fits(ErrorResponse, response) else f"unexpected {status}"
    if str(status) not in operation["responses"]:
        return f"undocumented status {status} for {method} {template}"
    if status == 200 and template == "/recommend":
        return None if _fits(RecommendResponse, response) else "200 body is not a RecommendResponse"
    if status == 200 and template.startswith("/items"):
        return None if _fits(ItemPublic, response) else "200 body is not an ItemPublic"
    if status >= 400 and not _fits(ErrorResponse, response):
        return f"{status} body is not an ErrorResponse"
    return None


def _fits(model: type[BaseModel], response: httpx.Response) -> bool:
    try:
        model.model_validate(response.json())
    except (ValueError, ValidationError):
        return False
    return True


def fuzz(base_url: str, cases: int, seed: int) -> dict[str, Any]:
    """Hypothesis-generated cases per route family, sequentially; counts and every violation."""
    results: dict[str, Any] = {"cases": 0, "by_route": {}, "statuses": Counter(), "violations": []}
    with httpx.Client(base_url=base_url, timeout=60) as client:
        openapi = client.get("/openapi.json").json()
        for name, (strategy, share) in FUZZ_PLAN.items():
            sent = _fuzz_family(client, openapi, strategy, int(cases * share), seed, results)
            results["by_route"][name] = sent
    results["statuses"] = dict(sorted(results["statuses"].items()))
    return results


def _fuzz_family(
    client: httpx.Client, openapi: dict[str, Any], strategy: Any, examples: int, seed: int, results: Any
) -> int:
    sent = 0

    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def one(case: Case) -> None:
        nonlocal sent
        method, path, body = case
        if body is None:
            response = client.request(method, path)
        else:
            response = client.request(
                method, path, content=body, headers={"content-type": "application/json"}
            )
        sent += 1
        results["cases"] += 1
        results["statuses"][response.status_code] += 1
        problem = check(openapi, case, response)
        if problem is not None:
            results["violations"].append({"method": method, "path": path[:120], "problem": problem})

    random.seed(seed)
    one()
    return sent


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
