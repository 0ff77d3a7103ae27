"""Nearest-neighbour libraries against the exact product, side by side on the same vectors and queries.

    .venv/bin/python -m bench.dense_ann --sizes 100000,1000000

The dense source's exact search reads every item vector for every query (10^6 items x 384 float32 =
1.5 GB a query). For each size (synthetic vectors, ``bench.scale_ids.synthetic_vectors``; queries are
items' vectors with noise, as a query lands near, not on, what it asks for): build seconds, query p50
(one query at a time, the service's case) and Recall@k of the exact top k (k = 10, the depth the dense
source feeds the fusion, and 50) for:

- ``exact``: the matrix product in torch (what ``semantic_ids.dense`` runs up to ``ANN_MIN_ITEMS``);
- ``served``: what it runs past that, ``NeighbourIndex`` (faiss's inverted lists over 8-bit vectors, the
  probes growing with the lists) then its ``ANN_NEIGHBOURS`` finds ordered by their exact cosines;
- ``usearch``: HNSW (``usearch.index.Index``), inner product over f16 vectors, default graph settings
  (not a dependency of the project: ``pip install usearch`` to compare it);
- ``faiss_hnsw``: faiss's HNSW over the float32 vectors, ``IndexHNSWFlat`` with inner product;
- ``faiss_ivf``: faiss's inverted lists (``IndexIVFFlat``, sqrt(N) lists trained on a sample, 16 probed);
- ``faiss_ivf_sq8``: the same lists over vectors stored in 8 bits a dimension (a quarter of float32).

Writes ``bench/results/dense_ann.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.child_runs import child_row, run_header, write_result
from bench.scale_ids import synthetic_vectors

OUT = Path("bench/results/dense_ann.json")
DEPTHS = (10, 50)
QUERY_NOISE = 0.5  # relative to a unit vector, before normalising


def _queries(vectors: np.ndarray, count: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = vectors[rng.integers(0, len(vectors), count)]
    noisy = picked + QUERY_NOISE * rng.standard_normal(picked.shape, dtype=np.float32) / np.sqrt(
        vectors.shape[1]
    )
    normalised: np.ndarray = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)
    return normalised


def _exact(vectors: np.ndarray) -> Callable[[np.ndarray, int], np.ndarray]:
    import torch

    matrix = torch.from_numpy(vectors)

    def search(query: np.ndarray, k: int) -> np.ndarray:
        scores = torch.from_numpy(query) @ matrix.T
        return scores.topk(k, dim=1).indices.numpy()

    return search


def _usearch(vectors: np.ndarray) -> Callable[[np.ndarray, int], np.ndarray]:
    from usearch.index import Index

    index = Index(ndim=vectors.shape[1], metric="ip", dtype="f16")
    index.add(np.arange(len(vectors)), vectors, threads=2)

    def search(query: np.ndarray, k: int) -> np.ndarray:
        return np.asarray(index.search(query, k, threads=1).keys).reshape(len(query), k)

    return search


def _faiss_hnsw(vectors: np.ndarray) -> Callable[[np.ndarray, int], np.ndarray]:
    import faiss

    index = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = 64
    index.add(vectors)

    def search(query: np.ndarray, k: int) -> np.ndarray:
        return np.asarray(index.search(query, k)[1])

    return search


def _faiss_ivf(vectors: np.ndarray, *, sq8: bool = False) -> Callable[[np.ndarray, int], np.ndarray]:
    import faiss

    faiss.omp_set_num_threads(2)
    lists = int(np.sqrt(len(vectors)))
    quantizer = faiss.IndexFlatIP(vectors.shape[1])
    index: Any
    if sq8:
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, vectors.shape[1], lists, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
    else:
        index = faiss.IndexIVFFlat(quantizer, vectors.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
    sample = vectors[
        np.random.default_rng(0).choice(len(vectors), min(len(vectors), 50 * lists), replace=False)
    ]
    index.train(sample)
    index.add(vectors)
    index.nprobe = 16
    faiss.omp_set_num_threads(1)  # one query at a time: the service's case

    def search(query: np.ndarray, k: int) -> np.ndarray:
        return np.asarray(index.search(query, k)[1])

    return search


def _served(vectors: np.ndarray) -> Callable[[np.ndarray, int], np.ndarray]:
    """What the service runs (``semantic_ids.dense``): the neighbour index's ``ANN_NEIGHBOURS`` finds,
    ordered by their exact cosines."""
    from semantic_ids.dense import ANN_NEIGHBOURS, NeighbourIndex

    index = NeighbourIndex(vectors)

    def search(query: np.ndarray, k: int) -> np.ndarray:
        rows = index.search(query, ANN_NEIGHBOURS)
        found = []
        for row, asked in zip(rows, query, strict=True):
            row = row[row >= 0]
            cosines = np.einsum("ij,j->i", vectors[row], asked)
            found.append(row[np.argsort(-cosines, kind="stable")[:k]])
        return np.asarray(found)

    return search


LIBRARIES: dict[str, Callable[[np.ndarray], Callable[[np.ndarray, int], np.ndarray]]] = {
    "served": _served,
    "exact": _exact,
    "usearch": _usearch,
    "faiss_hnsw": _faiss_hnsw,
    "faiss_ivf": _faiss_ivf,
    "faiss_ivf_sq8": lambda vectors: _faiss_ivf(vectors, sq8=True),
}


def measure(count: int, library: str, queries: int) -> dict[str, Any]:
    """One library at one size, in this process (its memory is its own)."""
    import torch

    torch.set_num_threads(2)
    vectors = synthetic_vectors(count)
    asked = _queries(vectors, queries)
    exact = _exact(vectors)
    truth = {k: exact(asked, k) for k in DEPTHS}
    started = time.perf_counter()
    search = LIBRARIES[library](vectors)
    build_s = time.perf_counter() - started
    search(asked[:1], max(DEPTHS))  # first call allocates
    seconds: list[float] = []
    recalls: dict[int, list[float]] = {k: [] for k in DEPTHS}
    for row in range(len(asked)):
        started = time.perf_counter()
        found = search(asked[row : row + 1], max(DEPTHS))[0]
        seconds.append(time.perf_counter() - started)
        for k in DEPTHS:
            recalls[k].append(len(set(found[:k].tolist()) & set(truth[k][row].tolist())) / k)
    return {
        "items": count,
        "library": library,
        "build_s": round(build_s, 2),
        "query_p50_ms": round(1000 * statistics.median(seconds), 3),
        **{f"recall@{k}_of_exact": round(statistics.fmean(recalls[k]), 4) for k in DEPTHS},
    }


def main(argv: Sequence[str] | None = None) -> int:

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="100000", help="comma-separated catalogue sizes")
    parser.add_argument("--libraries", default=",".join(LIBRARIES))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a child: "size,library"
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.one is not None:
        size, library = args.one.split(",")
        print(json.dumps(measure(int(size), library, args.queries)))
        return 0
    libraries = [name for name in args.libraries.split(",") if name]
    unknown = [name for name in libraries if name not in LIBRARIES]
    if unknown:
        parser.error(f"unknown libraries {unknown}: use {', '.join(LIBRARIES)}")
    for library in libraries:
        module = {"usearch": "usearch", "faiss_hnsw": "faiss", "faiss_ivf": "faiss"}.get(library)
        if module is not None and importlib.util.find_spec(module) is None:
            parser.error(f"{library} needs the package {module} (pip install {module}): or leave it out")
    rows = []
    for size in [int(part) for part in args.sizes.split(",") if part.strip()]:
        for library in libraries:
            what = f"{size},{library}"
            row = child_row(
                [sys.executable, "-m", "bench.dense_ann", "--one", what, "--queries", str(args.queries)], what
            )
            if row is None:
                return 1
            rows.append(row)
    result = {
        **run_header("bench.dense_ann", argv),
        "vectors": "synthetic (bench/scale_ids.py); queries: item vectors with noise",
        "rows": rows,
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
