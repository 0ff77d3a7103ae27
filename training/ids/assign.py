"""Semantic IDs for every item: the RQ-VAE codes plus a final disambiguation code, so that no two items
ever share an ID (items with the same RQ-VAE codes get 0, 1, 2, ... in a fixed order).

Writes the ID outputs of a run folder (``RunLayout``): items_with_ids.jsonl, id_report.json,
embeddings.npy, rqvae.safetensors and codebook_usage.png; the fine-tuning stages read them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semantic_ids.ids import SemanticId
from semantic_ids.rqvae import RQVAEConfig, SemanticRQVAE, save_rqvae
from training.data.embeddings import MODEL_NAME
from training.data.items import CatalogueItem
from training.ids.code_stats import collision_group_sizes, collision_rate, level_stats
from training.ids.train_rqvae import encode_items
from training.io import atomic_path, write_json, write_plot
from training.run_layout import RunLayout

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IdAssignment:
    semantic_ids: np.ndarray  # (n, levels + 1) int64: RQ-VAE codes, then the disambiguation code
    codebook_sizes: list[int]  # per level, the disambiguation level last
    report: dict[str, Any]


def disambiguation_codes(codes: np.ndarray, distances: np.ndarray, item_ids: list[str]) -> np.ndarray:
    """0, 1, 2, ... within each group of identical code tuples; closest to its codeword first, then by id.

    Distances are rounded so that float noise cannot reorder near-ties differently from run to run.
    """
    order = sorted(
        range(len(item_ids)),
        key=lambda index: (tuple(codes[index]), round(float(distances[index]), 6), item_ids[index]),
    )
    result = np.zeros(len(item_ids), dtype=np.int64)
    previous: tuple[int, ...] | None = None
    rank = 0
    for index in order:
        current = tuple(int(code) for code in codes[index])
        rank = rank + 1 if current == previous else 0
        result[index] = rank
        previous = current
    return result


def prefix_cosines(embeddings: np.ndarray, codes: np.ndarray, block_rows: int = 65_536) -> dict[str, float]:
    """Mean cosine of item pairs sharing the first l codes (l = 1..levels), and of all pairs.

    Exact over all pairs without forming them: for unit vectors, the sum of pairwise cosines within a
    group is (|sum of vectors|^2 - n) / 2. The group sums are taken ``block_rows`` rows at a time in group
    order, so memory stays flat: summing every group at once (``np.add.at`` into a float64 row per group)
    took 74 s and 5.5 GiB more for 10^6 items (bench/HISTORY.md, 2026-12-06).
    """
    count = len(embeddings)

    def mean_pair_cosine(groups: np.ndarray) -> float:
        _, inverse = np.unique(groups, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        sizes = np.bincount(inverse)
        pairs = int((sizes * (sizes - 1)).sum())
        if not pairs:
            return float("nan")
        return (_squared_group_sums(embeddings, inverse, block_rows) - count) / pairs

    result = {"all_pairs": mean_pair_cosine(np.zeros((count, 1), dtype=np.int64))}
    for length in range(1, codes.shape[1] + 1):
        result[f"same_prefix_{length}"] = mean_pair_cosine(codes[:, :length])
    return result


def _squared_group_sums(embeddings: np.ndarray, groups: np.ndarray, block_rows: int) -> float:
    """The sum over groups of |sum of the group's vectors|^2, ``block_rows`` rows at a time in group order;
    a group that runs past a block's end carries its partial sum into the next block."""
    order = np.argsort(groups, kind="stable")
    total = 0.0
    carried: np.ndarray | None = None  # the partial sum of the group the last block ended in
    carried_group = -1
    for start in range(0, len(order), block_rows):
        rows = order[start : start + block_rows]
        keys = groups[rows]
        starts = np.concatenate([[0], np.flatnonzero(np.diff(keys)) + 1])
        sums = np.add.reduceat(embeddings[rows].astype(np.float64), starts, axis=0)  # (segments, D)
        if carried is not None:
            if keys[0] == carried_group:
                sums[0] += carried
            else:
                total += float(carried @ carried)
        total += float((sums[:-1] ** 2).sum())
        carried, carried_group = sums[-1], int(keys[-1])
    if carried is not None:
        total += float(carried @ carried)
    return total


def assign_ids(
    items: list[CatalogueItem], embeddings: np.ndarray, model: SemanticRQVAE, config: RQVAEConfig
) -> IdAssignment:
    encoded = encode_items(model, embeddings)
    codes = encoded["codes"]  # (n, levels)
    distances = np.linalg.norm(encoded["latents"] - encoded["quantized"], axis=1)
    item_ids = [item.item_id for item in items]
    final = disambiguation_codes(codes, distances, item_ids)
    semantic_ids = np.concatenate([codes, final[:, None]], axis=1)
    if len(np.unique(semantic_ids, axis=0)) != len(items):
        raise AssertionError("semantic IDs are not unique after disambiguation")  # a bug, not bad input
    group_sizes = collision_group_sizes(codes)
    codebook_sizes = [config.codebook_size] * config.levels + [int(final.max()) + 1]
    cosines = prefix_cosines(embeddings, codes)
    report = {
        "item_count": len(items),
        "rq_levels": config.levels,
        "codebook_sizes": codebook_sizes,
        "collision_rate": collision_rate(codes),
        "items_in_collisions": int((group_sizes > 1).sum()),
        "largest_collision_group": int(group_sizes.max()),
        "unique_ids": True,
        "levels": level_stats(codes, config.codebook_size),
        "semantic_check": {
            "mean_cosine_same_level0": cosines["same_prefix_1"],
            "mean_cosine_random_pairs": cosines["all_pairs"],
            "by_prefix_length": cosines,
        },
        "embedding_model": MODEL_NAME,
        "embedding_dimensions": int(embeddings.shape[1]),
        "rqvae_config": config.to_json(),
    }
    return IdAssignment(semantic_ids=semantic_ids, codebook_sizes=codebook_sizes, report=report)


def items_with_ids(items: list[CatalogueItem], semantic_ids: np.ndarray) -> list[CatalogueItem]:
    return [
        item.with_id(SemanticId.from_codes(codes)) for item, codes in zip(items, semantic_ids, strict=True)
    ]


def plot_codebook_usage(codes: np.ndarray, codebook_size: int, path: Path) -> None:
    """One bar chart per level: how many items use each code (sorted, most used first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = codes.shape[1]
    figure, axes = plt.subplots(levels, 1, figsize=(10, 2.4 * levels), squeeze=False)
    for level, axis in enumerate(axes[:, 0]):
        counts = np.sort(np.bincount(codes[:, level], minlength=codebook_size))[::-1]
        used = int((counts > 0).sum())
        axis.bar(np.arange(codebook_size), counts, width=1.0, color="tab:blue")
        axis.set_title(f"level {level}: {used}/{codebook_size} codes used", fontsize=10)
        axis.set_ylabel("items")
    axes[-1, 0].set_xlabel("code (sorted by use)")
    figure.tight_layout()
    with atomic_path(path) as partial:
        figure.savefig(partial, dpi=80)
    plt.close(figure)


def write_id_outputs(
    layout: RunLayout,
    items: list[CatalogueItem],
    embeddings: np.ndarray,
    model: SemanticRQVAE,
    config: RQVAEConfig,
    assignment: IdAssignment,
) -> None:
    """Every ID output; items_with_ids.jsonl goes last, so its presence means a complete set."""
    layout.save_embeddings(embeddings)
    save_rqvae(model, config, layout.rqvae)
    codes = assignment.semantic_ids[:, :-1]
    write_plot(lambda path: plot_codebook_usage(codes, config.codebook_size, path), layout.usage_plot)
    write_json(assignment.report, layout.id_report)
    layout.save_items_with_ids(items_with_ids(items, assignment.semantic_ids))
    logger.info("wrote %d semantic IDs to %s", len(items), layout.items_with_ids)
