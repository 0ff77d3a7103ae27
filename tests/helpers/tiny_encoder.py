"""A tiny deterministic text encoder for the dense source's tests: hashed character trigrams.

It stands in for MiniLM the way the tiny random Llama stands in for SmolLM2: the same interface
(``semantic_ids.dense.QueryEncoder``), no model to load, and texts that share words share dimensions, so
a query that repeats an item's text has cosine similarity 1 with it and the best of all.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

TINY_ENCODER_MODEL = "tests/hashed-char-trigrams"


class HashingEncoder:
    model = TINY_ENCODER_MODEL
    dimensions = 64

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            padded = f"  {text.lower()} "
            for start in range(len(padded) - 2):
                vectors[row, zlib.crc32(padded[start : start + 3].encode()) % self.dimensions] += 1.0
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors
