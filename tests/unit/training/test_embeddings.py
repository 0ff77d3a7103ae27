"""The embedding cache: content-addressed, persistent, and never embeds an unchanged text twice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.data.embeddings import DIMENSIONS, EmbeddingCache, content_key, embed_texts


def test_content_key_depends_on_text_and_model() -> None:
    assert content_key("Heat (1995).") == content_key("Heat (1995).")
    assert content_key("Heat (1995).") != content_key("Heat (1996).")
    assert content_key("Heat (1995).", "model-a") != content_key("Heat (1995).", "model-b")


def test_cache_persists_across_instances_and_skips_broken_shards(tmp_path: Path) -> None:
    vectors = np.arange(2 * DIMENSIONS, dtype=np.float32).reshape(2, DIMENSIONS)
    EmbeddingCache(tmp_path).add(["k1", "k2"], vectors)
    reopened = EmbeddingCache(tmp_path)
    assert len(reopened) == 2 and np.array_equal(reopened["k2"], vectors[1])
    assert "k3" not in reopened
    # A shard whose keys do not match its rows (an interrupted writer) is ignored, not trusted.
    folder = reopened.folder
    np.save(folder / "broken.npy", vectors)
    (folder / "broken.keys").write_text("only-one-key")
    assert "only-one-key" not in EmbeddingCache(tmp_path)


@pytest.mark.slow
def test_minilm_embeddings_are_normalised_cached_and_meaningful(tmp_path: Path) -> None:
    texts = [
        "Alien (1979). Horror, Sci-Fi film directed by Ridley Scott.",
        "Aliens (1986). Action, Sci-Fi film directed by James Cameron.",
        "Toy Story (1995). Animation, Family film directed by John Lasseter.",
    ]
    first, counts = embed_texts(texts, cache_dir=tmp_path)
    assert first.shape == (3, DIMENSIONS) and first.dtype == np.float32
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert counts == {"items": 3, "cache_hits": 0, "embedded": 3}
    assert first[0] @ first[1] > first[0] @ first[2]
    again, counts = embed_texts([texts[2], texts[0], "Up (2009)."], cache_dir=tmp_path)
    assert counts == {"items": 3, "cache_hits": 2, "embedded": 1}
    assert np.allclose(again[0], first[2]) and np.allclose(again[1], first[0])
