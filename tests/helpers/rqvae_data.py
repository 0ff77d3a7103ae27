"""Synthetic clustered embeddings and a tiny RQ-VAE config, for the RQ-VAE and ID-assignment tests."""

from __future__ import annotations

import numpy as np

from semantic_ids.rqvae import RQVAEConfig

CLUSTERS = 8
TINY = RQVAEConfig(
    input_dim=48, hidden_dims=(64,), latent_dim=16, levels=2, codebook_size=8,
    epochs=25, batch_size=64, lr=3e-3, dead_code_threshold=0.5, seed=3,
)  # fmt: skip


def clustered_embeddings(seed: int = 0, per_cluster: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around CLUSTERS random centres; returns (embeddings, cluster label per row)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CLUSTERS, TINY.input_dim))
    labels = np.repeat(np.arange(CLUSTERS), per_cluster)
    points = centres[labels] + 0.25 * rng.normal(size=(len(labels), TINY.input_dim))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32), labels
