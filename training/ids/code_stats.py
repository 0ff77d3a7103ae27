"""Health figures of a set of item codes: codebook usage and perplexity per level, collisions."""

from __future__ import annotations

from typing import Any

import numpy as np


def level_stats(codes: np.ndarray, codebook_size: int) -> list[dict[str, Any]]:
    """Per level: share of the codebook used, and perplexity (exp of the code entropy; K when uniform)."""
    stats = []
    for level in range(codes.shape[1]):
        counts = np.bincount(codes[:, level], minlength=codebook_size)
        share = counts[counts > 0] / counts.sum()
        stats.append(
            {
                "level": level,
                "used_codes": int((counts > 0).sum()),
                "usage": float((counts > 0).sum() / codebook_size),
                "perplexity": float(np.exp(-(share * np.log(share)).sum())),
                "largest_code_share": float(share.max()),
            }
        )
    return stats


def collision_group_sizes(codes: np.ndarray) -> np.ndarray:
    """For every item, how many items (itself included) have exactly the same code tuple."""
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return counts[inverse.reshape(-1)]


def collision_rate(codes: np.ndarray) -> float:
    """Share of items whose full code tuple is shared with at least one other item."""
    return float((collision_group_sizes(codes) > 1).mean()) if len(codes) else 0.0
