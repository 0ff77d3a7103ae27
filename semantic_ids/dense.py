"""Dense retrieval: the cosine similarity of a query's embedding and each item's, over vectors stored in
the bundle.

The item vectors are the run's own ``embeddings.npy`` (MiniLM over ``render_row``, L2-normalised), the
ones the RQ-VAE learned the IDs from; the service embeds the query with the same model (a
``QueryEncoder``, ``semantic_ids.text_encoder``). Dense retrieval finds paraphrases and genre synonyms
("something that will give me nightmares") where neither BM25 nor the model has words to match.

On disk (the bundle's ``dense/`` folder): ``embeddings.npy`` (float32, items x dimensions, rows in
catalogue order, read with ``allow_pickle=False``) and ``index.json`` (format, embedding model,
dimensions, the catalogue hash and the item order it was built for, checked at load like the lexical
index's).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from semantic_ids.bundle import BundleMismatch, Manifest

VECTORS = "embeddings.npy"
INDEX_META = "index.json"
FORMAT = "npy-float32-l2/1"


class QueryEncoder(Protocol):
    """Text -> L2-normalised float32 vectors, (len(texts), dimensions)."""

    @property
    def model(self) -> str: ...

    @property
    def dimensions(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class DenseIndex:
    """Item vectors, rows in catalogue order, each of norm 1."""

    def __init__(self, vectors: np.ndarray, item_ids: Sequence[str], catalogue_hash: str, model: str) -> None:
        self.vectors = vectors  # (items, dimensions) float32
        self.item_ids = list(item_ids)
        self.catalogue_hash = catalogue_hash
        self.model = model

    @classmethod
    def build(
        cls, vectors: np.ndarray, rows: Sequence[Mapping[str, Any]], catalogue_hash: str, model: str
    ) -> DenseIndex:
        """Vectors of bundle catalogue rows, in their order (normalised again: norms of exactly 1)."""
        if vectors.ndim != 2 or vectors.shape[0] != len(rows):
            raise ValueError(f"{vectors.shape} item vectors for {len(rows)} catalogue items")
        matrix = vectors.astype(np.float32)
        matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        return cls(matrix, [str(row["item_id"]) for row in rows], catalogue_hash, model)

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def dimensions(self) -> int:
        return int(self.vectors.shape[1])

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / VECTORS, self.vectors, allow_pickle=False)
        meta = {
            "format": FORMAT,
            "model": self.model,
            "dimensions": self.dimensions,
            "catalogue_hash": self.catalogue_hash,
            "item_ids": self.item_ids,
        }
        (folder / INDEX_META).write_text(json.dumps(meta) + "\n")

    @classmethod
    def load(cls, folder: Path, rows: Sequence[Mapping[str, Any]], catalogue_hash: str) -> DenseIndex:
        """The vectors saved in ``folder``; ``BundleMismatch`` unless they were built for exactly ``rows``."""
        meta = json.loads((folder / INDEX_META).read_text())
        if meta.get("format") != FORMAT:
            raise BundleMismatch(f"dense index {folder} has format {meta.get('format')!r}; expected {FORMAT}")
        if meta.get("catalogue_hash") != catalogue_hash:
            raise BundleMismatch(
                f"dense index {folder} was built for catalogue {str(meta.get('catalogue_hash'))[:12]}, "
                f"but the bundle's catalogue is {catalogue_hash[:12]}"
            )
        if meta.get("item_ids") != [str(row["item_id"]) for row in rows]:
            raise BundleMismatch(f"dense index {folder} lists its items in another order than the catalogue")
        vectors = np.load(folder / VECTORS, allow_pickle=False)
        expected = (len(rows), meta.get("dimensions"))
        if vectors.shape != expected or vectors.dtype != np.float32:
            raise BundleMismatch(
                f"dense index {folder} holds {vectors.dtype} vectors of shape {vectors.shape}; "
                f"expected float32 {expected}"
            )
        return cls(vectors, meta["item_ids"], catalogue_hash, str(meta.get("model")))


class DenseRetriever:
    """An index and the encoder of its model: queries -> cosine similarity to every item."""

    def __init__(self, index: DenseIndex, encoder: QueryEncoder) -> None:
        if encoder.model != index.model or encoder.dimensions != index.dimensions:
            raise BundleMismatch(
                f"the dense index holds {index.dimensions}-d vectors of {index.model}, but the query "
                f"encoder is {encoder.model} ({encoder.dimensions}-d)"
            )
        self.index = index
        self.encoder = encoder

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """(queries, items) cosine similarities in [-1, 1].

        The product runs in torch, on the calling thread's OpenMP team, not in numpy: numpy's BLAS has
        threads of its own that spin after a matrix product, and on a 2-core CPU the model's next forward
        took 110 ms instead of 24 while they did (bench/HISTORY.md, 2026-12-06)."""
        vectors = torch.from_numpy(self.encoder.encode(list(queries)))  # (queries, dimensions)
        return (vectors @ torch.from_numpy(self.index.vectors).T).numpy()


def bundle_dense_index(
    bundle_dir: Path, manifest: Manifest, rows: Sequence[Mapping[str, Any]]
) -> DenseIndex | None:
    """The bundle's item vectors, checked against its catalogue and manifest; None for a bundle without
    them (written before schema 3, or without embeddings): hybrid then runs without the dense source."""
    folder = manifest.retrieval.dense_index if manifest.retrieval is not None else None
    if folder is None:
        return None
    if not (bundle_dir / folder / INDEX_META).is_file():
        raise BundleMismatch(f"bundle {manifest.bundle_id} names dense index {folder!r}, which it lacks")
    index = DenseIndex.load(bundle_dir / folder, rows, manifest.catalogue.content_hash)
    if (index.model, index.dimensions) != (manifest.embedding.model, manifest.embedding.dimensions):
        raise BundleMismatch(
            f"bundle {manifest.bundle_id}: its dense index holds {index.dimensions}-d vectors of "
            f"{index.model}, its manifest names {manifest.embedding.dimensions}-d {manifest.embedding.model}"
        )
    return index
