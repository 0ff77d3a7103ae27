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
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from semantic_ids.bundle import BundleMismatch, Manifest, row_item_ids

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
        return cls(matrix, row_item_ids(rows), catalogue_hash, model)

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
        if meta.get("item_ids") != row_item_ids(rows):
            raise BundleMismatch(f"dense index {folder} lists its items in another order than the catalogue")
        vectors = np.load(folder / VECTORS, allow_pickle=False)
        expected = (len(rows), meta.get("dimensions"))
        if vectors.shape != expected or vectors.dtype != np.float32:
            raise BundleMismatch(
                f"dense index {folder} holds {vectors.dtype} vectors of shape {vectors.shape}; "
                f"expected float32 {expected}"
            )
        return cls(vectors, meta["item_ids"], catalogue_hash, str(meta.get("model")))


# Past this many items the dense source searches a neighbour index instead of reading every vector
# for every query (bench/RESULTS.md, Scale: at 10^6 items the exact product reads 1.5 GB a query).
ANN_MIN_ITEMS = 200_000
ANN_NEIGHBOURS = 256  # neighbours a query takes from the index; their cosines are then computed exactly
# Inverted lists searched a query: a 16th of them, at least 16 (bench/dense_ann.py: 16 of 1,000 lists
# found 0.82 of the exact top 10 at 10^6 items).
ANN_MIN_PROBES = 16
ANN_PROBE_SHARE = 1 / 16


class NeighbourIndex:
    """Approximate nearest neighbours by inner product: faiss's inverted lists (``IndexIVFScalarQuantizer``)
    over the item vectors stored in 8 bits a dimension (a quarter of their float32 bytes), sqrt(N) lists
    trained on a seeded sample, a 16th of them (at least 16) searched a query. Built from the vectors at load
    (seconds at 10^6 items), so it always holds the served catalogue, overlay included; nothing extra
    is stored in the bundle. Chosen over HNSW (faiss's, usearch's) by ``bench/dense_ann.py``."""

    def __init__(self, vectors: np.ndarray, *, seed: int = 0) -> None:
        try:
            import faiss
        except ImportError as error:
            raise BundleMismatch(
                f"{len(vectors)} item vectors need the neighbour index, which needs faiss-cpu: "
                "pip install faiss-cpu"
            ) from error
        count, dimensions = vectors.shape
        lists = max(1, int(math.sqrt(count)))
        quantizer = faiss.IndexFlatIP(dimensions)
        self._index = faiss.IndexIVFScalarQuantizer(
            quantizer, dimensions, lists, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        rng = np.random.default_rng(seed)
        sample = vectors[np.sort(rng.choice(count, min(count, 64 * lists), replace=False))]
        self._index.train(np.ascontiguousarray(sample, dtype=np.float32))
        for start in range(0, count, 65_536):  # in blocks: no float32 copy of the whole matrix
            self._index.add(np.ascontiguousarray(vectors[start : start + 65_536], dtype=np.float32))
        self._index.nprobe = min(lists, max(ANN_MIN_PROBES, round(lists * ANN_PROBE_SHARE)))
        self._faiss = faiss

    def search(self, queries: np.ndarray, depth: int) -> np.ndarray:
        """(queries, depth) item rows, nearest first; -1 where fewer were found.

        One faiss thread: a query probes a few lists, and a second OpenMP team beside torch's costs the
        model's forwards more than it saves (bench/HISTORY.md, 2026-12-06)."""
        self._faiss.omp_set_num_threads(1)
        _, rows = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), depth)
        return np.asarray(rows)


class DenseRetriever:
    """An index and the encoder of its model: queries -> cosine similarity to the items.

    Up to ``ANN_MIN_ITEMS`` items every similarity is exact; past that the neighbour index finds each
    query's ``ANN_NEIGHBOURS`` nearest and only those get their (exact) cosine, the rest 0, until
    ``DenseScores.fill`` computes the ones a caller needs."""

    def __init__(self, index: DenseIndex, encoder: QueryEncoder, *, ann_min_items: int | None = None) -> None:
        if encoder.model != index.model or encoder.dimensions != index.dimensions:
            raise BundleMismatch(
                f"the dense index holds {index.dimensions}-d vectors of {index.model}, but the query "
                f"encoder is {encoder.model} ({encoder.dimensions}-d)"
            )
        self.index = index
        self.encoder = encoder
        threshold = ANN_MIN_ITEMS if ann_min_items is None else ann_min_items  # read now: settable
        self.neighbours = NeighbourIndex(index.vectors) if len(index) >= threshold else None

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """(queries, items) cosine similarities in [-1, 1], every one exact (the whole product)."""
        return self._product(torch.from_numpy(self.encoder.encode(list(queries))))

    def search(self, queries: Sequence[str]) -> DenseScores:
        """The queries' similarities: exact for every item, or, past ``ANN_MIN_ITEMS``, for each query's
        nearest items only (``DenseScores.fill`` adds others)."""
        vectors = self.encoder.encode(list(queries))  # (queries, dimensions)
        if self.neighbours is None:
            return DenseScores(vectors, self._product(torch.from_numpy(vectors)), None)
        similarity = np.zeros((len(vectors), len(self.index)), dtype=np.float32)
        near = self.neighbours.search(vectors, ANN_NEIGHBOURS)
        scores = DenseScores(vectors, similarity, self.index.vectors)
        for query, rows in enumerate(near):
            scores.fill(query, rows[rows >= 0])
        return scores

    def _product(self, vectors: torch.Tensor) -> np.ndarray:
        # In torch, on the calling thread's OpenMP team, not in numpy: numpy's BLAS has threads of its own
        # that spin after a matrix product, and on a 2-core CPU the model's next forward took 110 ms
        # instead of 24 while they did (bench/HISTORY.md, 2026-12-06).
        return (vectors @ torch.from_numpy(self.index.vectors).T).numpy()


class DenseScores:
    """A batch's cosine similarities, (queries, items); ``item_vectors`` None: every one is exact."""

    def __init__(self, vectors: np.ndarray, similarity: np.ndarray, item_vectors: np.ndarray | None) -> None:
        self.vectors = vectors
        self.similarity = similarity
        self._item_vectors = item_vectors

    def fill(self, query: int, rows: Sequence[int] | np.ndarray) -> None:
        """Compute the exact cosines of ``rows`` for query ``query`` (a no-op where all are exact)."""
        if self._item_vectors is None or len(rows) == 0:
            return
        chosen = np.asarray(rows, dtype=np.int64)
        # einsum, not ``@``: numpy's BLAS threads spin after a product (``DenseRetriever._product``).
        self.similarity[query, chosen] = np.einsum("ij,j->i", self._item_vectors[chosen], self.vectors[query])


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
