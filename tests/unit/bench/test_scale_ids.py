"""The scale benchmark's synthetic item vectors: unit vectors, the same for a seed, grouped in topics."""

from __future__ import annotations

import numpy as np

from bench.scale_ids import DIMENSIONS, ITEMS_PER_TOPIC, synthetic_vectors


def test_synthetic_vectors_are_unit_vectors_in_topics() -> None:
    vectors = synthetic_vectors(4 * ITEMS_PER_TOPIC, seed=3)
    assert vectors.shape == (4 * ITEMS_PER_TOPIC, DIMENSIONS) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors, synthetic_vectors(4 * ITEMS_PER_TOPIC, seed=3))
    cosines = vectors @ vectors.T
    nearest = np.sort(cosines, axis=1)[:, -2]  # each vector's closest other vector
    assert float(np.median(nearest)) > 0.5  # neighbours share a topic; random 384-d vectors sit near 0
