"""Two checkouts of the service over HTTP, side by side: one client, each query sent to both servers in turn.

    .venv/bin/python -m bench.http_side_by_side --before /tmp/before --after .

A 2-core machine's speed drifts by 10-15 % within an hour, so two `bench.service_bench` runs one after the
other compare the hours as much as the code. Here both servers are up at once (the same bundle, the same
PostgreSQL catalogue), and every query goes to one and then the other, the order alternating, in `hybrid`
and then in `generative`: a drift moves both alike and the ratio holds. Each server is started alone first
and its cold start (process start -> /readyz) timed; ``--cold-starts N`` starts each side N times, alone,
the order alternating, and reports the median; ``--concurrency C`` then sends bursts of C clients at once
(``--rounds`` of them, 8 requests a client, to one side and then the other, the first side alternating) and
reports each side's requests per second, the median over rounds. The servers run with
``OMP_WAIT_POLICY=PASSIVE`` so the idle one's OpenMP threads sleep instead of spinning beside the other's
request; two resident servers still share caches and memory bandwidth, so the absolute figures run above
one server's: compare the ratios.

``--before`` and ``--after`` are checkout folders (`git worktree add /tmp/before <commit>`), each with the
bundle at ``--bundle`` (relative paths resolve in each checkout) and a `.venv` (a link to this one's works:
`python -m` runs each checkout's own code). Prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.service_bench import BENCH_DATABASE, prepare_database, wait_ready
from semantic_ids.bundle import read_manifest

SIDES = ("before", "after")
MODES = ("hybrid", "generative")


@contextmanager
def server(
    checkout: Path, bundle: Path, database_url: str, port: int
) -> Iterator[tuple[httpx.Client, float]]:
    """``semid-service serve`` from ``checkout``; yields a client and the seconds to /readyz 200."""
    command = [
        str(checkout / ".venv" / "bin" / "python"), "-m", "app.cli", "serve",
        "--bundle", str(bundle), "--database-url", database_url, "--port", str(port),
    ]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    with tempfile.NamedTemporaryFile("w+", prefix="semid-side-", suffix=".log") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT)
        base_url = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=base_url, timeout=120)
        try:
            cold_start_s = wait_ready(base_url, process, log.name, started)
            yield client, cold_start_s
        finally:
            client.close()
            process.terminate()
            process.wait(60)


def unseen_queries(path: Path, count: int) -> list[str]:
    rows = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
    queries = [row["query"] for row in rows]
    random.Random(0).shuffle(queries)
    return queries[:count]


def alternate(clients: dict[str, httpx.Client], queries: Sequence[str]) -> dict[str, dict[str, list[float]]]:
    """Seconds per request, by side and mode; each query to both sides in turn, the first side alternating."""
    seconds: dict[str, dict[str, list[float]]] = {side: {mode: [] for mode in MODES} for side in clients}
    for client in clients.values():  # connections and the first requests' one-off costs
        for query in queries[:3]:
            client.post("/recommend", json={"query": query, "k": 10}).raise_for_status()
    for index, query in enumerate(queries):
        order = list(clients) if index % 2 == 0 else list(reversed(clients))
        for mode in MODES:
            for side in order:
                begun = time.perf_counter()
                clients[side].post(
                    "/recommend", json={"query": query, "k": 10, "mode": mode}
                ).raise_for_status()
                seconds[side][mode].append(time.perf_counter() - begun)
    return seconds


def bursts(
    clients: dict[str, httpx.Client], queries: Sequence[str], concurrency: int, rounds: int
) -> dict[str, list[float]]:
    """Requests per second of each side under ``concurrency`` clients, one value a round."""
    per_client = 8
    rates: dict[str, list[float]] = {side: [] for side in clients}

    def client_requests(client: httpx.Client, offset: int) -> None:
        for index in range(per_client):
            query = queries[(offset + index) % len(queries)]
            client.post("/recommend", json={"query": query, "k": 10}).raise_for_status()

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for round_ in range(rounds):
            for side in list(clients) if round_ % 2 == 0 else list(reversed(clients)):
                begun = time.perf_counter()
                offsets = [(round_ * concurrency + worker) * per_client for worker in range(concurrency)]
                list(pool.map(client_requests, [clients[side]] * concurrency, offsets))
                rates[side].append(concurrency * per_client / (time.perf_counter() - begun))
    return rates


def summary(seconds: dict[str, dict[str, list[float]]], cold: dict[str, list[float]]) -> dict[str, Any]:
    def ms(values: list[float], quantile: float) -> float:
        return round(1000 * sorted(values)[min(len(values) - 1, int(quantile * len(values)))], 1)

    result: dict[str, Any] = {
        side: {
            "cold_start_s": round(statistics.median(cold[side]), 2),
            "cold_starts_s": [round(value, 2) for value in cold[side]],
        }
        for side in seconds
    }
    for side, modes in seconds.items():
        for mode, values in modes.items():
            result[side][mode] = {
                "p50_ms": round(1000 * statistics.median(values), 1),
                "p95_ms": ms(values, 0.95),
            }
    result["after_over_before_p50"] = {
        mode: round(result["after"][mode]["p50_ms"] / result["before"][mode]["p50_ms"], 3) for mode in MODES
    }
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--before", type=Path, required=True, help="checkout of the code before")
    parser.add_argument("--after", type=Path, default=Path("."), help="checkout of the code after")
    parser.add_argument("--bundle", type=Path, default=Path("artifacts/bundles/demo"))
    parser.add_argument("--queries", type=Path, default=Path("bench/queries/demo_unseen.jsonl"))
    parser.add_argument("--count", type=int, default=120)
    parser.add_argument("--cold-starts", type=int, default=1, help="starts of each side timed alone")
    parser.add_argument("--concurrency", type=int, default=0, help="clients at once in bursts (0: none)")
    parser.add_argument("--rounds", type=int, default=6, help="bursts to each side")
    parser.add_argument(
        "--postgres-admin-url",
        default=os.environ.get(
            "SEMID_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
        help=f"a server where the bench may (re)create the database {BENCH_DATABASE!r}",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/http_side_by_side.json"))
    args = parser.parse_args(argv)
    checkouts = {"before": args.before.resolve(), "after": args.after.resolve()}
    for side, checkout in checkouts.items():
        if not (checkout / args.bundle / "manifest.json").is_file():
            sys.exit(f"error: --{side} {checkout} has no bundle at {args.bundle}")
    bundle = (checkouts["after"] / args.bundle).resolve()
    database_url = prepare_database(args.postgres_admin_url, bundle, read_manifest(bundle))
    cold: dict[str, list[float]] = {side: [] for side in SIDES}
    for repeat in range(args.cold_starts - 1):  # the order alternates: neither side always starts first
        for side in SIDES[::-1] if repeat % 2 == 0 else SIDES:
            with server(checkouts[side], args.bundle, database_url, 8801) as (_, cold_start_s):
                cold[side].append(cold_start_s)
    with ExitStack() as stack:
        clients = {}
        for port, side in enumerate(SIDES, start=8801):  # one at a time: each cold start is timed alone
            clients[side], cold_start_s = stack.enter_context(
                server(checkouts[side], args.bundle, database_url, port)
            )
            cold[side].append(cold_start_s)
        queries = unseen_queries(args.queries, args.count)
        seconds = alternate(clients, queries)
        rates = bursts(clients, queries, args.concurrency, args.rounds) if args.concurrency else None
    result = {"checkouts": {side: str(path) for side, path in checkouts.items()}, "queries": args.count}
    result |= summary(seconds, cold)
    if rates is not None:
        for side in SIDES:
            result[side][f"c{args.concurrency}_rps"] = round(statistics.median(rates[side]), 2)
            result[side][f"c{args.concurrency}_rps_rounds"] = [round(rate, 2) for rate in rates[side]]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        "| side | hybrid p50 / p95 ms | generative p50 / p95 ms | cold start s |\n| --- | --- | --- | --- |"
    )
    for side in SIDES:
        row = result[side]
        print(
            f"| {side} | {row['hybrid']['p50_ms']} / {row['hybrid']['p95_ms']} | "
            f"{row['generative']['p50_ms']} / {row['generative']['p95_ms']} | {row['cold_start_s']} |"
        )
    if rates is not None:
        key = f"c{args.concurrency}_rps"
        print(
            f"{args.concurrency} clients at once, requests/s: "
            + ", ".join(f"{side} {result[side][key]}" for side in SIDES)
        )
    print(f"after / before at p50: {result['after_over_before_p50']}\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
