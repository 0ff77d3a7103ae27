"""Catalogue churn, measured: films the model never saw, added through the API and served at once.

Needs a bundle trained with films held out (``semid pipeline --profile demo --hold-out 0.1 --name
demo-churn``: the held-out films are in no part of the training, the RQ-VAE included). On a copy of the
bundle, served by ``semid-service serve`` over a fresh SQLite database:

1. every held-out film is added with ``PUT /items/{item_id}``, one at a time: the time to add one
   (client and server), and whether the very next request finds it;
2. queries about the held-out films and about as many trained films, in four kinds written here (the
   title, a typo'd title, the director with a lesser-billed actor, genre + decade + an actor's surname),
   each with its film as the one relevant item: Hit@10 of hybrid and generative over HTTP, beside
   full-row BM25 and dense MiniLM over the same served catalogue; and how often the model's top 10
   hold the held-out film's first code (and its whole RQ-VAE prefix);
3. 1,000 films of the full catalogue the demo lacks, added in one ``POST /items/batch``;
4. 1,000 mixed requests at concurrency 8 while 200 more films are added and 50 deleted: the 5xx count
   and whether every recommended item was readable from ``/items`` (deleted ones excepted).

    python -m bench.churn_bench [--bundle artifacts/bundles/demo-churn] [--out bench/results/churn_demo.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from app.catalogue_updates import read_bundle_catalogue, served_catalogue
from bench.service_bench import BenchConfig, percentiles, prepare_database, served
from semantic_ids.dense import bundle_dense_index
from semantic_ids.ids import SemanticId
from training.data.catalogue import read_catalogue
from training.data.items import CatalogueItem, items_from_dicts
from training.eval.baselines import bm25_rankings, dense_rankings
from training.profiles import load_profile
from training.run_layout import BASE_MODELS_DIR, RunLayout

logger = logging.getLogger("bench.churn_bench")

TOKEN = "churn-bench-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
TOP_K = 10
KINDS = ("title", "title_typo", "director_and_actor", "genre_decade_actor")
DECADE_WORDS = {
    1920: "the twenties", 1930: "the thirties", 1940: "the forties", 1950: "the fifties",
    1960: "the sixties", 1970: "the seventies", 1980: "the eighties", 1990: "the nineties",
    2000: "the two-thousands", 2010: "the 2010s",
}  # fmt: skip


# --- queries about one film, in phrasings of this bench's own ------------------------------------


def film_queries(film: CatalogueItem) -> list[dict[str, str]]:
    """Up to one query per kind about ``film`` (a kind is skipped when the film lacks its fields)."""
    fields = film.fields
    out = [{"kind": "title", "query": film.title.lower()}]
    typo = _typo(film.title)
    if typo != film.title:
        out.append({"kind": "title_typo", "query": typo})
    cast = [str(name) for name in fields.get("cast", [])]
    director = str(fields.get("director", "")).split(",")[0].strip()
    if director and len(cast) >= 3:
        out.append({"kind": "director_and_actor", "query": f"the {_surname(director)} film with {cast[2]}"})
    genres, year = fields.get("genres") or [], fields.get("year")
    if genres and isinstance(year, int) and cast and year // 10 * 10 in DECADE_WORDS:
        decade = DECADE_WORDS[year // 10 * 10]
        out.append(
            {
                "kind": "genre_decade_actor",
                "query": f"{genres[0].lower()} from {decade} with {_surname(cast[0])}",
            }
        )
    return out


def _surname(name: str) -> str:
    return name.split()[-1] if name.split() else name


def _typo(title: str) -> str:
    """Two neighbouring letters of the title's longest word swapped (a slip of the fingers)."""
    words = title.split()
    longest = max(range(len(words)), key=lambda i: len(words[i])) if words else 0
    word = words[longest] if words else ""
    if len(word) < 5:
        return title
    middle = len(word) // 2
    words[longest] = word[: middle - 1] + word[middle] + word[middle - 1] + word[middle + 1 :]
    return " ".join(words)


# --- the measurements ------------------------------------------------------------------------------


def add_one_by_one(client: httpx.Client, films: Sequence[CatalogueItem]) -> dict[str, Any]:
    """PUT each film; the time to add one, and whether the next request (its title, lexical) finds it."""
    wall, server, found_next = [], [], 0
    assigned: dict[str, str] = {}
    placements: dict[str, int] = {}
    for film in films:
        started = time.perf_counter()
        response = client.put(
            f"/items/{film.item_id}", json={"title": film.title, "fields": dict(film.fields)}
        )
        wall.append(time.perf_counter() - started)
        response.raise_for_status()
        outcome = response.json()["items"][0]
        server.append(response.json()["seconds"])
        assigned[film.item_id] = outcome["semantic_id"]
        kind = "neighbour" if "nearest prefix" in outcome["reason"] else "own"
        placements[kind] = placements.get(kind, 0) + 1
        answer = client.post("/recommend", json={"query": film.title, "k": TOP_K, "mode": "lexical"})
        found_next += film.item_id in [item["item_id"] for item in answer.json()["items"]]
    return {
        "items": len(films),
        "client_ms": percentiles(wall),
        "server_ms": percentiles(server),
        "found_by_the_next_request": found_next / len(films),
        "placements": placements,
        "assigned": assigned,
    }


def recommend_all(client: httpx.Client, queries: Sequence[str], mode: str) -> list[list[dict[str, Any]]]:
    out = []
    for query in queries:
        response = client.post("/recommend", json={"query": query, "k": TOP_K, "mode": mode}, timeout=60)
        response.raise_for_status()
        out.append(response.json()["items"])
    return out


def quality(
    client: httpx.Client,
    groups: Mapping[str, list[tuple[CatalogueItem, dict[str, str]]]],
    rows: list[dict[str, Any]],
    vectors: np.ndarray,
) -> dict[str, Any]:
    """Hit@10 per group (held-out / trained films) and kind, per system, on the served catalogue."""
    catalogue = items_from_dicts(rows)
    item_ids = [item.item_id for item in catalogue]
    result: dict[str, Any] = {}
    for group, asked in groups.items():
        texts = [query["query"] for _, query in asked]
        rankings: dict[str, list[list[str]]] = {}
        answers = {mode: recommend_all(client, texts, mode) for mode in ("hybrid", "generative")}
        for mode, found in answers.items():
            rankings[mode] = [[item["item_id"] for item in items] for items in found]
        rankings["bm25_full_row"] = bm25_rankings(texts, catalogue, top_k=TOP_K)
        with tempfile.TemporaryDirectory() as cache:
            rankings["dense_minilm"] = dense_rankings(
                texts, item_ids, vectors, top_k=TOP_K, cache_dir=Path(cache)
            )
        per_kind: dict[str, dict[str, float]] = {}
        for kind in KINDS:
            rows_of_kind = [i for i, (_, query) in enumerate(asked) if query["kind"] == kind]
            if rows_of_kind:
                per_kind[kind] = {"queries": len(rows_of_kind)} | {
                    system: _hit(ranked, asked, rows_of_kind) for system, ranked in rankings.items()
                }
        everything = list(range(len(asked)))
        result[group] = {
            "queries": len(asked),
            "films": len({film.item_id for film, _ in asked}),
            "hit@10": {system: _hit(ranked, asked, everything) for system, ranked in rankings.items()},
            "per_kind": per_kind,
            "prefix": _prefix_hits(answers["generative"], asked),
        }
    return result


def _hit(ranked: list[list[str]], asked: Sequence[tuple[CatalogueItem, Any]], rows: Sequence[int]) -> float:
    return round(sum(asked[i][0].item_id in ranked[i][:TOP_K] for i in rows) / len(rows), 3)


def _prefix_hits(
    generative: list[list[dict[str, Any]]], asked: Sequence[tuple[CatalogueItem, Any]]
) -> dict[str, float]:
    """How often the model's top 10 hold an ID with the film's first code, or its whole RQ prefix."""
    first = whole = 0
    for items, (film, _) in zip(generative, asked, strict=True):
        codes = SemanticId.parse(film.fields["__semantic_id"]).codes
        written = [SemanticId.parse(item["semantic_id"]).codes for item in items]
        first += any(w[0] == codes[0] for w in written)
        whole += any(w[:-1] == codes[:-1] for w in written)
    return {"first_code": round(first / len(asked), 3), "rq_prefix": round(whole / len(asked), 3)}


def add_batch(client: httpx.Client, films: Sequence[CatalogueItem]) -> dict[str, Any]:
    body = "\n".join(json.dumps(film.to_flat(), ensure_ascii=False) for film in films).encode()
    started = time.perf_counter()
    response = client.post(
        "/items/batch", content=body, headers={"Content-Type": "application/x-ndjson"}, timeout=600
    )
    seconds = time.perf_counter() - started
    response.raise_for_status()
    return {
        "items": len(films),
        "bytes": len(body),
        "client_s": round(seconds, 2),
        "server_s": response.json()["seconds"],
    }


def under_load(
    base_url: str, queries: Sequence[str], adds: Sequence[CatalogueItem], deletes: Sequence[str]
) -> dict[str, Any]:
    """1,000 mixed requests at concurrency 8 while ``adds`` are added and ``deletes`` deleted."""
    statuses: list[int] = []
    unreadable: list[str] = []
    deleted: set[str] = set()
    writer_done = threading.Event()
    lock = threading.Lock()

    def writer() -> None:
        with httpx.Client(base_url=base_url, headers=ADMIN, timeout=120) as client:
            for number, film in enumerate(adds):
                client.put(
                    f"/items/{film.item_id}", json={"title": film.title, "fields": dict(film.fields)}
                ).raise_for_status()
                if number % 4 == 0 and deletes[number // 4 : number // 4 + 1]:
                    item_id = deletes[number // 4]
                    with lock:
                        deleted.add(item_id)  # from here on it may be gone
                    client.delete(f"/items/{item_id}").raise_for_status()
        writer_done.set()

    def reader(number: int) -> None:
        with httpx.Client(base_url=base_url, timeout=120) as client:
            for index in range(number, 1000, 8):
                mode = ("hybrid", "lexical", "generative", "lexical")[index % 4]
                response = client.post(
                    "/recommend", json={"query": queries[index % len(queries)], "k": 5, "mode": mode}
                )
                with lock:
                    statuses.append(response.status_code)
                if response.status_code != 200:
                    continue
                for item in response.json()["items"][:2]:
                    read = client.get(f"/items/{item['semantic_id']}")
                    with lock:  # a 404 is an answer, not an error: the item may be deleted by now
                        statuses.append(read.status_code)
                        if read.status_code == 404 and item["item_id"] not in deleted:
                            unreadable.append(item["item_id"])

    started = time.perf_counter()
    write = threading.Thread(target=writer)
    write.start()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(reader, range(8)))
    write.join()
    return {
        "requests": len(statuses),
        "seconds": round(time.perf_counter() - started, 1),
        "status_5xx": sum(status >= 500 for status in statuses),
        "status_4xx": sum(400 <= status < 500 for status in statuses),
        "served_but_unreadable": len(unreadable),
        "added": len(adds),
        "deleted": len(deleted),
        "writer_finished_before_readers": writer_done.is_set(),
    }


# --- the run ---------------------------------------------------------------------------------------


def run(bundle_dir: Path, run_dir: Path, port: int, seed: int) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="semid-churn-")) / "bundle"
    shutil.copytree(bundle_dir, scratch)  # the trained bundle stays as it was
    manifest, base_rows, _ = read_bundle_catalogue(scratch)
    database_url = prepare_database(None, scratch, manifest)
    held_out = read_catalogue(RunLayout(run_dir).held_out)
    trained = random.Random(seed).sample(items_from_dicts(base_rows), len(held_out))
    served_ids = {row["item_id"] for row in base_rows} | {film.item_id for film in held_out}
    others = [film for film in load_profile("full") if film.item_id not in served_ids]
    batch, extra = others[:1000], others[1000:1200]
    config = BenchConfig(scratch, BASE_MODELS_DIR, None, None, 0, 0, 0, 0, port, Path("-"), ())
    results: dict[str, Any] = {"bundle": manifest.bundle_id, "held_out_films": len(held_out)}
    with served(config, database_url, port, SEMID_ADMIN_TOKEN=TOKEN) as (base_url, cold_start_s):
        results["cold_start_s"] = round(cold_start_s, 2)
        with httpx.Client(base_url=base_url, headers=ADMIN, timeout=60) as client:
            added = add_one_by_one(client, held_out)
            assigned = added.pop("assigned")
            results["add_one"] = added
            manifest, base_rows, overlay = read_bundle_catalogue(scratch)
            dense = bundle_dense_index(scratch, manifest, base_rows)
            assert dense is not None, "the bundle has no item vectors"
            rows, live = served_catalogue(manifest, base_rows, dense.vectors, overlay)
            assert live is not None
            by_id = {row["item_id"]: row for row in rows}
            groups: dict[str, list[tuple[CatalogueItem, dict[str, str]]]] = {}
            for group, films in (("held_out", held_out), ("trained", trained)):
                tagged = []
                for film in films:
                    codes = SemanticId.from_codes(by_id[film.item_id]["semantic_id"]).compact
                    assert film.item_id not in assigned or assigned[film.item_id] == codes
                    marked = CatalogueItem(film.item_id, film.title, {**film.fields, "__semantic_id": codes})
                    tagged += [(marked, query) for query in film_queries(film)]
                groups[group] = tagged
            results["quality"] = quality(client, groups, rows, live.vectors)
            results["batch_1000"] = add_batch(client, batch)
        queries = [query["query"] for _, query in groups["trained"]]
        deletes = [film.item_id for film in batch[:50]]
        results["under_load"] = under_load(base_url, queries, extra, deletes)
    shutil.rmtree(scratch.parent, ignore_errors=True)
    return results


def table(results: Mapping[str, Any]) -> str:
    lines = [
        "| films | queries | hybrid | generative | BM25 full row | dense | RQ prefix in model top 10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for group, figures in results["quality"].items():
        hit = figures["hit@10"]
        lines.append(
            f"| {group} | {figures['queries']} | {hit['hybrid']:.3f} | {hit['generative']:.3f} | "
            f"{hit['bm25_full_row']:.3f} | {hit['dense_minilm']:.3f} | {figures['prefix']['rq_prefix']:.3f} |"
        )
    one = results["add_one"]
    lines.append(
        f"\nadd one: p50 {one['client_ms']['p50_ms']:.0f} ms client / "
        f"{one['server_ms']['p50_ms']:.0f} ms server; "
        f"found by the next request {one['found_by_the_next_request']:.2f}; batch of 1,000: "
        f"{results['batch_1000']['client_s']:.1f} s; under load: {results['under_load']}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bundle", type=Path, default=Path("artifacts/bundles/demo-churn"))
    parser.add_argument("--run-dir", type=Path, default=Path("artifacts/runs/demo-churn"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/churn_demo.json"))
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results = run(args.bundle, args.run_dir, args.port, args.seed)
    results["command"] = "python -m bench.churn_bench " + " ".join(argv or [])
    results["date"] = time.strftime("%Y-%m-%d")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
