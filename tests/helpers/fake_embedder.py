"""A stand-in for MiniLM: hashed bag-of-words vectors, so texts that share words are close.

Pipeline tests patch ``training.data.embeddings.load_minilm`` to return it: the ID stage, the dense
baseline and the embedding cache all run as they do for real, without loading the model.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from training.data.embeddings import DIMENSIONS


def _word_vector(word: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).normal(size=DIMENSIONS).astype(np.float32)


class FakeEmbedder:
    """``encode`` as SentenceTransformer's: (texts, 384) float32, L2-normalised."""

    def encode(self, texts: Sequence[str], **_options: Any) -> np.ndarray:
        rows = []
        for text in texts:
            words = re.findall(r"\w+", text.lower()) or ["empty"]
            row = np.sum([_word_vector(word) for word in words], axis=0)
            rows.append(row / max(float(np.linalg.norm(row)), 1e-12))
        return np.stack(rows).astype(np.float32)
