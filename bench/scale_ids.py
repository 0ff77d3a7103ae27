"""How the ID stage and the prefix trie grow with the catalogue: 10^3 to 10^6 items, from given embeddings.

    .venv/bin/python -m bench.scale_ids --sizes 1000,10000,100000,1000000

For each size, in a process of its own (so the peak resident memory is that size's): synthetic item
vectors (below), the RQ-VAE preset a catalogue of that size gets (``training.profiles.rqvae_config``, as
``semid pipeline --jsonl`` would choose it), trained and assigned exactly as the pipeline's ID stage does
(``train_rqvae``, ``assign_ids``), then the service's ``PrefixTrie`` over the IDs. Records the seconds of
each step, the trie's bytes and build time, collisions, and the process's peak resident memory. Appends to
``bench/results/scale.json`` (issue 26's scale table; the service figures are still to come).

The vectors are synthetic, not MiniLM embeddings of items (embedding 10^6 texts takes hours on 2 cores):
unit vectors of the MiniLM's 384 dimensions drawn around one centre per 40 items (a "topic"), with noise
of the spread measured between the demo's films that share a genre and decade. The RQ-VAE sees clustered
data of the right shape; how well the IDs group real items is measured on the demo (RESULTS.md, IDs).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.child_runs import child_row, run_header, write_result

DIMENSIONS = 384
ITEMS_PER_TOPIC = 40
NOISE = 0.6  # relative to a unit centre, before normalising: same-topic cosine ~0.7, like real neighbours
OUT = Path("bench/results/scale.json")


def synthetic_vectors(count: int, seed: int = 0) -> np.ndarray:
    """(count, 384) float32 unit vectors in topics of ``ITEMS_PER_TOPIC``, made in blocks (flat memory)."""
    rng = np.random.default_rng(seed)
    topics = max(1, count // ITEMS_PER_TOPIC)
    centres = rng.standard_normal((topics, DIMENSIONS), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = np.empty((count, DIMENSIONS), dtype=np.float32)
    for start in range(0, count, 65_536):
        stop = min(count, start + 65_536)
        block = centres[rng.integers(0, topics, stop - start)]
        block += NOISE * rng.standard_normal(block.shape, dtype=np.float32) / np.sqrt(DIMENSIONS)
        vectors[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return vectors


def measure(count: int) -> dict[str, Any]:
    """One size, in this process."""
    import torch

    from semantic_ids.ids import IdScheme, SemanticId
    from semantic_ids.trie import PrefixTrie
    from training.data.items import CatalogueItem
    from training.ids.assign import assign_ids
    from training.ids.train_rqvae import train_rqvae
    from training.profiles import rqvae_config

    started = time.perf_counter()
    vectors = synthetic_vectors(count)
    made_s = time.perf_counter() - started
    config = rqvae_config("scale", count)
    started = time.perf_counter()
    model, _ = train_rqvae(vectors, config, show_progress=False)
    train_s = time.perf_counter() - started
    items = [CatalogueItem(item_id=f"item-{index:07d}", title=f"item {index}") for index in range(count)]
    started = time.perf_counter()
    assignment = assign_ids(items, vectors, model, config)
    assign_s = time.perf_counter() - started
    scheme = IdScheme(tuple(assignment.codebook_sizes))
    started = time.perf_counter()
    trie = PrefixTrie([SemanticId(tuple(int(c) for c in row)) for row in assignment.semantic_ids], scheme)
    trie_s = time.perf_counter() - started
    tables = [*trie.children, *trie.rest]
    report = assignment.report
    return {
        "items": count,
        "rqvae": {
            "levels": config.levels,
            "codebook_size": config.codebook_size,
            "epochs": config.epochs,
            "train_sample": config.train_sample,
        },
        "codebook_sizes": assignment.codebook_sizes,
        "collision_rate": report["collision_rate"],
        "largest_collision_group": report["largest_collision_group"],
        "seconds": {
            "synthetic_vectors": round(made_s, 2),
            "train_rqvae": round(train_s, 2),
            "assign": round(assign_s, 2),
            "id_stage": round(train_s + assign_s, 2),
            "trie_build": round(trie_s, 2),
        },
        "trie_bytes": int(sum(t.numel() * t.element_size() for t in tables if isinstance(t, torch.Tensor))),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated catalogue sizes")
    parser.add_argument(
        "--one", type=int, default=None, help=argparse.SUPPRESS
    )  # a child: one size, JSON out
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.one is not None:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(measure(args.one)))
        return 0
    sizes = [int(part) for part in args.sizes.split(",") if part.strip()]
    rows = []
    for size in sizes:
        child = [sys.executable, "-m", "bench.scale_ids", "--one", str(size), "--threads", str(args.threads)]
        row = child_row(child, f"size {size}")
        if row is None:
            return 1
        rows.append(row)
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result["id_stage"] = {
        **run_header("bench.scale_ids", argv),
        "vectors": "synthetic (bench/scale_ids.py): topics of 40 items, not MiniLM embeddings",
        "rows": rows,
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
