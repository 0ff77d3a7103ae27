"""Typo-tolerant title matching measured: BM25 alone vs BM25 + rapidfuzz title match (the lexical retriever).

    .venv/bin/python -m bench.typo_titles --catalogue artifacts/runs/demo/items_with_ids.jsonl

Queries are made from the catalogue's own titles (seeded): ``typo`` (one edit in one word of four or
more letters: a dropped, doubled, swapped or replaced letter), ``partial`` (the first half of the words
of titles of three words or more), ``typo_phrased`` (a typo'd title inside "looking for ..."). Also, so
the title match is seen not to hurt what BM25 already does, the run's held-out phrasings
(``examples.jsonl``, ``split == "valid"``) when ``--examples`` is given. A query's target is the one
item it was made from; the figure is Hit@10. CPU only, no model: seconds for 1,000 items. With
``--bundle``, a seeded sample (``--sample``) of each set also goes through the service's ``hybrid`` mode
(model + lexical, the manifest's fusion parameters), one query at a time.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semantic_ids.lexical import LexicalIndex, LexicalScores

TOP_K = 10
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def typo(word: str, rng: random.Random) -> str:
    at = rng.randrange(len(word) - 1)
    kind = rng.choice(["drop", "double", "swap", "replace"])
    if kind == "drop":
        return word[:at] + word[at + 1 :]
    if kind == "double":
        return word[:at] + word[at] + word[at:]
    if kind == "swap":
        return word[:at] + word[at + 1] + word[at] + word[at + 2 :]
    return word[:at] + rng.choice(LETTERS.replace(word[at].lower(), "")) + word[at + 1 :]


def typo_title(title: str, rng: random.Random) -> str | None:
    words = title.split()
    long_words = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not long_words:
        return None
    at = rng.choice(long_words)
    words[at] = typo(words[at], rng)
    return " ".join(words)


def title_queries(rows: Sequence[Mapping[str, Any]], seed: int) -> dict[str, list[tuple[str, int]]]:
    """(query, target row) per kind, from the titles."""
    rng = random.Random(seed)
    out: dict[str, list[tuple[str, int]]] = {"typo": [], "partial": [], "typo_phrased": []}
    for row_index, row in enumerate(rows):
        title = str(row["title"])
        typoed = typo_title(title, rng)
        if typoed is not None:
            out["typo"].append((typoed, row_index))
            out["typo_phrased"].append((f"looking for {typoed}", row_index))
        words = title.split()
        if len(words) >= 3:
            out["partial"].append((" ".join(words[: (len(words) + 1) // 2]), row_index))
    return out


def valid_queries(examples: Path, rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, int]]:
    row_of = {str(row["item_id"]): i for i, row in enumerate(rows)}
    out = []
    for line in examples.read_text().splitlines():
        example = json.loads(line)
        if example.get("split") == "valid" and example.get("item_id") in row_of:
            out.append((str(example["query"]), row_of[example["item_id"]]))
    return out


VARIANTS: dict[str, Callable[[LexicalScores], np.ndarray]] = {
    "bm25": lambda s: s.bm25,
    "title": lambda s: s.title,
    "bm25+title": lambda s: s.combined,  # the lexical retriever
}


def hit_at_k(index: LexicalIndex, queries: Sequence[tuple[str, int]]) -> dict[str, float]:
    hits = dict.fromkeys(VARIANTS, 0)
    for text, target in queries:
        scores = index.scores(text)
        for name, pick in VARIANTS.items():
            values = pick(scores)
            # ties count against the target: rows with its score rank ahead of it too
            better = int((values >= values[target]).sum()) - 1
            hits[name] += int(values[target] > 0 and better < TOP_K)
    return {name: round(count / max(1, len(queries)), 4) for name, count in hits.items()}


def hybrid_hit_at_k(
    ranker: Any, queries: Sequence[tuple[str, int]], sample: int, seed: int
) -> dict[str, float]:
    """Hit@10 of hybrid mode on a seeded sample of ``queries``."""
    chosen = random.Random(seed).sample(list(queries), min(sample, len(queries)))
    hits = 0
    for text, target in chosen:
        found = ranker.rank([text], TOP_K, "hybrid", num_beams=TOP_K)[0]
        hits += int(ranker.ids[target] in [f.semantic_id for f in found])
    return {"hybrid_sampled": len(chosen), "hybrid": round(hits / max(1, len(chosen)), 4)}


def _ranker(bundle: Path, base_models_dir: Path) -> Any:
    from app.inference.model_loading import load_recommender_model

    return load_recommender_model(bundle, base_models_dir, "auto").ranker()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--catalogue", type=Path, default=Path("artifacts/runs/demo/items_with_ids.jsonl"))
    parser.add_argument("--examples", type=Path, default=None, help="a run's examples.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--bundle", type=Path, default=None, help="also measure hybrid mode with this bundle")
    parser.add_argument("--base-models-dir", type=Path, default=Path("artifacts/base_models"))
    parser.add_argument("--sample", type=int, default=200, help="queries per set through hybrid mode")
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in args.catalogue.read_text().splitlines() if line.strip()]
    index = LexicalIndex.build(rows, catalogue_hash="-")
    sets = title_queries(rows, args.seed)
    if args.examples is not None:
        sets["valid_phrasings"] = valid_queries(args.examples, rows)
    result = {kind: {"queries": len(qs), **hit_at_k(index, qs)} for kind, qs in sets.items()}
    if args.bundle is not None:
        ranker = _ranker(args.bundle, args.base_models_dir)
        if ranker.lexical.item_ids != [str(row["item_id"]) for row in rows]:
            parser.error("--bundle must hold the catalogue given by --catalogue, in the same order")
        for kind, qs in sets.items():
            result[kind] |= hybrid_hit_at_k(ranker, qs, args.sample, args.seed)
    print(f"| queries | n | {' | '.join(f'{v} hit@10' for v in VARIANTS)} |")
    print("|" + " --- |" * (len(VARIANTS) + 2))
    for kind, figures in result.items():
        cells = " | ".join(f"{figures[v]:.3f}" for v in VARIANTS)
        hybrid = (
            f" hybrid {figures['hybrid']:.3f} (of {figures['hybrid_sampled']})" if "hybrid" in figures else ""
        )
        print(f"| {kind} | {figures['queries']} | {cells} |{hybrid}")
    if args.out is not None:
        args.out.write_text(json.dumps({"command": " ".join(sys.argv), "hit@10": result}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
