"""Recommendation quality on unseen phrasings: the service's three modes against BM25 and dense retrieval.

    .venv/bin/python -m bench.quality_bench --bundle artifacts/bundles/demo
    .venv/bin/python -m bench.quality_bench --systems dense,bm25     # no bundle needed

Queries come from ``bench/queries/demo_unseen.jsonl`` (see ``bench.unseen_queries``): hand-written,
in categories, each with every catalogue item that passes its filter as relevant. All systems answer
the same queries over the same catalogue:

- ``hybrid``, ``generative``, ``lexical``: the service's retrieval modes (``semantic_ids.hybrid``) over
  the bundle, with its manifest's fusion parameters: ``generative`` is the fine-tuned LLM alone (beam
  search inside the trie of existing IDs, 10 beams, top 10), ``lexical`` the bundle's BM25 index plus
  title matching, ``hybrid`` both fused, with the dense source (MiniLM neighbours) as a third when the
  bundle has item vectors and its fusion uses them (``extra.dense_source`` says). One query at a time,
  so a latency is a single query's, the three interleaved query by query (their ratio holds when the
  machine's speed drifts during the run);
- ``dense``: ``training.eval.baselines.dense_rankings`` (MiniLM query vector, cosine against the run's
  ``embeddings.npy``);
- ``bm25``: ``training.eval.baselines.bm25_rankings`` (bm25s over the whole row, ``full_row_text``: the
  title and every field, as a user would index it in ten minutes);
- ``random``: the expected figures of a random ranking (computed, not sampled), the floor to read
  broad queries against.

The baselines' helpers embed or index everything per call, so their per-query latency is measured
on a second pass that loads the model / builds the index once and then answers one query at a time;
that pass's top 10 is compared with the helpers' (``agreement``). Metrics are defined in
``bench.relevance_metrics``. Prints one Markdown table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.relevance_metrics import METRICS, expected_random, mean_metrics, query_metrics
from bench.unseen_queries import CATEGORIES as FIRST_SET_CATEGORIES
from bench.unseen_queries import DEFAULT_OUT, flat, read_jsonl, relevant_items
from bench.unseen_queries_2 import CATEGORIES as SECOND_SET_CATEGORIES
from bench.unseen_queries_3 import CATEGORIES as THIRD_SET_CATEGORIES
from semantic_ids.bundle import MANIFEST
from training.run_layout import ARTIFACTS, BASE_MODELS_DIR, RunLayout, bundle_dir_for

# Every set's kinds, in their order (no two sets share a kind's name).
CATEGORIES = (*FIRST_SET_CATEGORIES, *SECOND_SET_CATEGORIES, *THIRD_SET_CATEGORIES)

logger = logging.getLogger("bench.quality_bench")

MODES = ("hybrid", "generative", "lexical")  # the service's modes, all from one loaded bundle
SYSTEMS = (*MODES, "dense", "bm25")
SUMMARY_METRICS = ("recall@10", "hit@10", "ndcg@10")
TOP_K = 10
WARMUP_QUERIES = ("a film to warm up the caches", "warm-up query two")


class BenchError(RuntimeError):
    """An input is missing or does not fit; the message says what to fix."""


@dataclass(frozen=True)
class QualityBenchConfig:
    bundle_dir: Path | None
    run_dir: Path
    queries_file: Path
    systems: tuple[str, ...]
    base_models_dir: Path
    out: Path
    beams: int = 10
    device: str = "auto"
    limit: int | None = None  # the first N queries of each category: a smoke run, not a result
    summary_out: Path | None = None


@dataclass
class SystemRun:
    """One system's top-k item ids per query, single-query latencies (s), and its own diagnostics."""

    rankings: list[list[str]]
    latencies_s: list[float]
    extra: dict[str, Any] = field(default_factory=dict)


# --- inputs ---------------------------------------------------------------------------------------


def load_items(config: QualityBenchConfig) -> list[dict[str, Any]]:
    """Items with IDs: the bundle's catalogue when there is a bundle, else the run's items_with_ids."""
    if config.bundle_dir is not None and (config.bundle_dir / MANIFEST).is_file():
        from semantic_ids.bundle import read_catalogue

        return list(read_catalogue(config.bundle_dir))
    if set(MODES) & set(config.systems):
        raise BenchError(
            f"no bundle at {config.bundle_dir} (manifest.json missing): run `semid pipeline --profile demo` "
            "first, or pass --systems dense,bm25"
        )
    path = RunLayout(config.run_dir).items_with_ids
    if not path.is_file():
        raise BenchError(f"{path} is missing: run `semid ids --profile demo` first")
    return read_jsonl(path)


def load_embeddings(run_dir: Path, items: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The run's MiniLM item vectors, reordered to ``items`` (the bundle may order rows differently)."""
    path, ids_path = RunLayout(run_dir).embeddings, RunLayout(run_dir).items_with_ids
    if not path.is_file() or not ids_path.is_file():
        raise BenchError(f"{path} or {ids_path} is missing: run `semid ids --profile demo` first")
    matrix: np.ndarray = np.load(path)  # (run items, 384), rows in items_with_ids order
    row_of = {str(row["item_id"]): index for index, row in enumerate(read_jsonl(ids_path))}
    missing = [str(item["item_id"]) for item in items if str(item["item_id"]) not in row_of]
    if missing or len(row_of) != matrix.shape[0]:
        raise BenchError(
            f"{path} does not cover the catalogue ({len(missing)} items missing, e.g. {missing[:3]}); "
            "pass the --run-dir the bundle was built from"
        )
    return matrix[[row_of[str(item["item_id"])] for item in items]]


def load_queries(path: Path, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The query set, after checking that its relevance still matches this catalogue."""
    if not path.is_file():
        raise BenchError(f"{path} is missing: run `python -m bench.unseen_queries` to build it")
    queries = read_jsonl(path)
    flat_items = [flat(item) for item in items]
    stale = [q["qid"] for q in queries if relevant_items(flat_items, q["filter"]) != q["relevant"]]
    if stale:
        raise BenchError(
            f"{len(stale)} queries' relevant items differ on this catalogue (e.g. {stale[:3]}): "
            "rebuild with `python -m bench.unseen_queries --catalogue <its catalogue.jsonl>`"
        )
    return queries


# --- systems --------------------------------------------------------------------------------------


def _timed_each(texts: Sequence[str], answer: Callable[[str], list[str]]) -> SystemRun:
    for text in WARMUP_QUERIES:
        answer(text)
    rankings, latencies = [], []
    for text in texts:
        started = time.perf_counter()
        rankings.append(answer(text))
        latencies.append(time.perf_counter() - started)
    return SystemRun(rankings, latencies)


def _agreement(a: Sequence[Sequence[str]], b: Sequence[Sequence[str]]) -> float:
    """Share of queries whose two top-k lists hold the same items (order aside)."""
    return round(sum(set(x) == set(y) for x, y in zip(a, b, strict=True)) / max(1, len(a)), 4)


def run_modes(
    config: QualityBenchConfig, items: Sequence[Mapping[str, Any]], texts: Sequence[str]
) -> dict[str, SystemRun]:
    """The bundle's modes that ``config.systems`` names, from one loaded model, interleaved."""
    from app.inference.model_loading import load_recommender_model
    from semantic_ids.ids import SemanticId

    if config.bundle_dir is None:
        raise BenchError("the model needs --bundle")
    started = time.perf_counter()
    loaded = load_recommender_model(config.bundle_dir, config.base_models_dir, config.device)
    load_s = time.perf_counter() - started
    ranker = loaded.ranker()
    dense_source = ranker.dense is not None
    if not dense_source:
        logger.warning(
            "hybrid runs without the dense source: the bundle has no item vectors (`semid dense-index`) "
            "or its fusion leaves them out (`python -m bench.tune_fusion --write`)"
        )
    item_of = {SemanticId.from_codes(item["semantic_id"]): str(item["item_id"]) for item in items}
    modes = [m for m in MODES if m in config.systems]
    logger.info(
        "%s: %d queries, one at a time, %d beams, interleaved", "+".join(modes), len(texts), config.beams
    )
    runs = _interleaved({mode: _ModeRun(ranker, mode, item_of, config.beams) for mode in modes}, texts)
    for mode, run in runs.items():
        run.extra |= {"bundle_id": loaded.manifest.bundle_id, "device": str(loaded.device)}
        run.extra["load_s"] = round(load_s, 2)
        if mode == "hybrid":
            run.extra["dense_source"] = dense_source
    return runs


def _interleaved(runners: Mapping[str, _ModeRun], texts: Sequence[str]) -> dict[str, SystemRun]:
    """Every query through every mode before the next query, the modes' order rotating: the latencies of
    the modes are side by side in time, so a machine that speeds up or slows down during the run (other
    load, clocks) moves them alike and their ratio holds."""
    modes = list(runners)
    for text in WARMUP_QUERIES:
        for runner in runners.values():
            runner.answer(text)
    rankings: dict[str, list[list[str]]] = {mode: [] for mode in modes}
    latencies: dict[str, list[float]] = {mode: [] for mode in modes}
    for index, text in enumerate(texts):
        shift = index % len(modes)
        for mode in modes[shift:] + modes[:shift]:
            started = time.perf_counter()
            rankings[mode].append(runners[mode].answer(text))
            latencies[mode].append(time.perf_counter() - started)
    return {
        mode: SystemRun(rankings[mode], latencies[mode], extra=runners[mode].extra(rankings[mode]))
        for mode in modes
    }


class _ModeRun:
    """One mode of the loaded ranker: its answers, and what it reports beside them."""

    def __init__(self, ranker: Any, mode: str, item_of: Mapping[Any, str], beams: int) -> None:
        self.ranker, self.mode, self.item_of, self.beams = ranker, mode, item_of, beams
        self.fusion_s: list[float] = []
        self.dense_s: list[float] = []
        self.sources: dict[str, int] = {}

    def answer(self, text: str) -> list[str]:
        found = self.ranker.rank(
            [text], TOP_K, self.mode, num_beams=self.beams, on_fusion=self.fusion_s.append,
            on_dense=self.dense_s.append,
        )[0]  # fmt: skip
        for f in found:
            key = "+".join(f.sources)
            self.sources[key] = self.sources.get(key, 0) + 1
        return [self.item_of[f.semantic_id] for f in found if f.semantic_id in self.item_of]

    def extra(self, rankings: Sequence[Sequence[str]]) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "beams": self.beams,
            "short_lists": sum(len(row) < TOP_K for row in rankings),
            "sources_in_top10": self.sources,
        }
        if self.mode == "hybrid":
            extra["fusion"] = self.ranker.fusion.model_dump()
            extra["fusion_latency"] = _latency(self.fusion_s[len(WARMUP_QUERIES) :] or [0.0])
            if self.dense_s:  # part of the fusion time: query embedding and similarities
                extra["dense_latency"] = _latency(self.dense_s[len(WARMUP_QUERIES) :] or [0.0])
        return extra


def run_dense(items: Sequence[Mapping[str, Any]], embeddings: np.ndarray, texts: Sequence[str]) -> SystemRun:
    from training.data.embeddings import load_minilm
    from training.eval.baselines import dense_rankings

    item_ids = [str(item["item_id"]) for item in items]
    with tempfile.TemporaryDirectory(prefix="quality-bench-") as cache:  # keep query vectors out of the cache
        rankings = dense_rankings(texts, item_ids, embeddings, top_k=TOP_K, cache_dir=Path(cache))
    model = load_minilm()

    def answer(text: str) -> list[str]:
        vector = model.encode([text], convert_to_numpy=True, normalize_embeddings=True)[0]  # (384,)
        scores = embeddings @ vector  # (items,)
        top = np.argpartition(-scores, TOP_K)[:TOP_K]
        return [item_ids[i] for i in top[np.argsort(-scores[top])]]

    timed = _timed_each(texts, answer)
    return SystemRun(rankings, timed.latencies_s, {"agreement": _agreement(rankings, timed.rankings)})


def run_bm25(items: Sequence[Mapping[str, Any]], texts: Sequence[str]) -> SystemRun:
    from semantic_ids.lexical import import_bm25s
    from training.data.items import items_from_dicts
    from training.eval.baselines import bm25_rankings, full_row_text

    bm25s = import_bm25s()

    catalogue = items_from_dicts(items)
    rankings = bm25_rankings(texts, catalogue, top_k=TOP_K)
    started = time.perf_counter()
    corpus = [full_row_text(item) for item in catalogue]  # the same index bm25_rankings builds
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(corpus, stopwords="en", show_progress=False), show_progress=False)
    index_s = time.perf_counter() - started

    def answer(text: str) -> list[str]:
        tokens = bm25s.tokenize([text], stopwords="en", show_progress=False)
        found, _ = retriever.retrieve(tokens, k=TOP_K, show_progress=False)  # (1, k) corpus rows
        return [str(items[int(i)]["item_id"]) for i in found[0]]

    timed = _timed_each(texts, answer)
    extra = {"index_build_s": round(index_s, 3), "agreement": _agreement(rankings, timed.rankings)}
    return SystemRun(rankings, timed.latencies_s, extra)


# --- scoring --------------------------------------------------------------------------------------


def _latency(samples_s: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "mean_ms": round(float(ms.mean()), 2),
    }


def _grouped(queries: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    categories = [c for c in CATEGORIES if any(q["category"] == c for q in queries)]
    by_category = {
        c: mean_metrics(r for q, r in zip(queries, rows, strict=True) if q["category"] == c)
        for c in categories
    }
    return {"all": mean_metrics(rows), "by_category": by_category}


def _head_to_head(per_query: Sequence[Mapping[str, Any]], systems: Sequence[str]) -> dict[str, Any]:
    """How often hybrid (else the model alone) finds something (hit@10) where another system does not."""
    lead = next((s for s in ("hybrid", "generative") if s in systems), None)
    if lead is None:
        return {}
    out = {}
    for other in (s for s in systems if s != lead):
        pairs = [(q["systems"][lead]["hit@10"], q["systems"][other]["hit@10"]) for q in per_query]
        out[f"{lead}_vs_{other}"] = {
            f"{lead}_only": sum(m > o for m, o in pairs),
            f"{other}_only": sum(o > m for m, o in pairs),
            "both": sum(m == o == 1 for m, o in pairs),
            "neither": sum(m == o == 0 for m, o in pairs),
        }
    return out


def named_in_text(query: Mapping[str, Any], texts: Mapping[str, str]) -> float | None:
    """Share of the relevant items whose item text names every person in the filter (None: no person).

    The text shows six cast names (alphabetical in movies.db, not by billing), so an actor can be in
    a film's cast, and the filter, without any of the three systems having seen the name with it.
    """
    names = [str(n) for key in ("cast", "director") for n in _names(query["filter"].get(key))]
    if not names:
        return None
    named = sum(all(n in texts[i] for n in names) for i in query["relevant"])
    return round(named / len(query["relevant"]), 4)


def _names(value: Any) -> list[Any]:
    return [] if value is None else list(value) if isinstance(value, list) else [value]


def score(
    queries: Sequence[Mapping[str, Any]],
    runs: Mapping[str, SystemRun],
    items: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    from training.data.item_text import render_item_text
    from training.data.items import CatalogueItem

    texts = {str(item["item_id"]): render_item_text(CatalogueItem.from_dict(item)) for item in items}
    per_query: list[dict[str, Any]] = []
    for index, query in enumerate(queries):
        relevant = set(query["relevant"])
        entry: dict[str, Any] = {k: query[k] for k in ("qid", "category", "lang", "query")}
        entry["n_relevant"] = len(relevant)
        entry["named_in_text"] = named_in_text(query, texts)
        entry["systems"] = {
            name: {
                **{m: round(v, 4) for m, v in query_metrics(run.rankings[index], relevant).items()},
                "top10": run.rankings[index],
            }
            for name, run in runs.items()
        }
        random_figures = expected_random(len(items), len(relevant))
        entry["systems"]["random"] = {m: round(v, 4) for m, v in random_figures.items()}
        per_query.append(entry)
    systems: dict[str, Any] = {}
    for name, run in {**runs, "random": None}.items():
        rows = [q["systems"][name] for q in per_query]
        systems[name] = _grouped(queries, rows)
        if run is not None:
            systems[name]["latency"] = _latency(run.latencies_s)
            systems[name] |= run.extra
    return {"systems": systems, "head_to_head": _head_to_head(per_query, list(runs)), "per_query": per_query}


def format_table(result: Mapping[str, Any]) -> str:
    """One Markdown table: every category (and all queries) by system."""
    systems = result["systems"]
    counts = {c: sum(q["category"] == c for q in result["per_query"]) for c in CATEGORIES}
    header = "| queries | system | " + " | ".join(METRICS) + " | p50 ms | p95 ms |"
    lines = [header, "|" + " --- |" * (len(METRICS) + 4)]
    for group in ("all", *(c for c in CATEGORIES if counts[c])):
        n = len(result["per_query"]) if group == "all" else counts[group]
        for name, figures in systems.items():
            row = figures["all"] if group == "all" else figures["by_category"][group]
            latency = figures.get("latency", {}) if group == "all" else {}
            cells = [f"{row[m]:.3f}" for m in METRICS]
            cells += [f"{latency[k]:.1f}" if k in latency else "" for k in ("p50_ms", "p95_ms")]
            lines.append(f"| {group} ({n}) | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- entry point ----------------------------------------------------------------------------------


def run_bench(config: QualityBenchConfig) -> dict[str, Any]:
    items = load_items(config)
    queries = load_queries(config.queries_file, items)
    if config.limit is not None:
        queries = [q for c in CATEGORIES for q in [q for q in queries if q["category"] == c][: config.limit]]
    texts = [q["query"] for q in queries]
    runs: dict[str, SystemRun] = {}
    if set(MODES) & set(config.systems):
        runs |= run_modes(config, items, texts)
    if "dense" in config.systems:
        logger.info("dense: %d queries", len(texts))
        runs["dense"] = run_dense(items, load_embeddings(config.run_dir, items), texts)
    if "bm25" in config.systems:
        logger.info("bm25: %d queries", len(texts))
        runs["bm25"] = run_bm25(items, texts)
    import torch

    result = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "-m", "bench.quality_bench", *sys.argv[1:]]),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "queries_file": str(config.queries_file),
        "queries": len(queries),
        "limited": config.limit is not None,
        "catalogue_items": len(items),
        "metric_definitions": "see bench/relevance_metrics.py: recall@10 = |R ∩ top10| / min(10, |R|); "
        "hit@10 = any relevant in top 10; ndcg@10 binary gains; mrr = 1/rank of first relevant in top 10",
    }
    return result | score(queries, runs, items)


def summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """Per mode and baseline: recall@10, hit@10, ndcg@10, over all queries and per category, and p50."""
    systems = {}
    for name, figures in result["systems"].items():
        entry: dict[str, Any] = {
            "all": {m: figures["all"][m] for m in SUMMARY_METRICS},
            "by_category": {
                c: {m: row[m] for m in SUMMARY_METRICS} for c, row in figures["by_category"].items()
            },
        }
        if "latency" in figures:
            entry["latency"] = figures["latency"]
        if "fusion" in figures:
            entry["fusion"] = figures["fusion"]
            entry["fusion_latency"] = figures["fusion_latency"]
            for key in ("dense_source", "dense_latency"):
                if key in figures:
                    entry[key] = figures[key]
        systems[name] = entry
    keys = ("created_at", "command", "machine", "queries_file", "queries", "limited", "catalogue_items")
    return {**{k: result[k] for k in keys}, "systems": systems}


def _write_json(result: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    partial.replace(path)


def parse_args(argv: Sequence[str] | None) -> tuple[QualityBenchConfig, int]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=bundle_dir_for("demo"))
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="run folder with embeddings.npy (default: artifacts/runs/<bundle profile>)",
    )
    parser.add_argument("--queries", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated: {','.join(SYSTEMS)}")
    parser.add_argument("--base-models-dir", type=Path, default=BASE_MODELS_DIR)
    parser.add_argument("--out", type=Path, default=ARTIFACTS / "bench" / "quality_unseen.json")
    parser.add_argument(
        "--summary-out",
        type=Path,
        default=None,
        help="also write the per-system, per-category figures without the per-query detail here",
    )
    parser.add_argument("--beams", type=int, default=10)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the CPU is shared)")
    parser.add_argument(
        "--limit", type=int, default=None, help="first N queries of each category (smoke run)"
    )
    args = parser.parse_args(argv)  # fmt: skip
    systems = tuple(s.strip() for s in args.systems.split(",") if s.strip())
    if not systems or set(systems) - set(SYSTEMS):
        parser.error(f"--systems takes a comma-separated subset of {','.join(SYSTEMS)}")
    run_dir = args.run_dir or _default_run_dir(args.bundle)
    config = QualityBenchConfig(
        bundle_dir=args.bundle, run_dir=run_dir, queries_file=args.queries, systems=systems,
        base_models_dir=args.base_models_dir, out=args.out, beams=args.beams, device=args.device,
        summary_out=args.summary_out,
        limit=args.limit,
    )  # fmt: skip
    return config, args.threads


def _default_run_dir(bundle_dir: Path) -> Path:
    manifest = bundle_dir / MANIFEST
    profile = json.loads(manifest.read_text())["catalogue"]["profile"] if manifest.is_file() else "demo"
    return RunLayout.for_profile(profile).folder


def main(argv: Sequence[str] | None = None) -> int:
    config, threads = parse_args(argv)
    # Before torch loads: one thread each, since the two cores are shared with training runs.
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, str(threads))
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from semantic_ids.bundle import BundleMismatch

    try:
        result = run_bench(config)
    except (BenchError, BundleMismatch) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    _write_json(result, config.out)
    if config.summary_out is not None:
        _write_json(summary(result), config.summary_out)
        print(f"wrote {config.summary_out}")
    print(format_table(result))
    for pair, counts in result["head_to_head"].items():
        print(f"{pair}: {counts}")
    print(f"wrote {config.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
