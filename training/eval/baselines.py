"""Retrieval baselines on the same queries as the fine-tuned model: dense (MiniLM cosine) and BM25.

Both read the items through ``training.data.item_text.render_item_text``, the text the IDs were learned
from, so the three systems see the same facts about each item.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.data.embeddings import DEFAULT_CACHE_DIR, embed_texts
from training.data.item_text import render_item_text
from training.data.items import CatalogueItem

logger = logging.getLogger(__name__)


def dense_rankings(
    queries: Sequence[str],
    item_ids: Sequence[str],
    item_embeddings: np.ndarray,
    *,
    top_k: int = 10,
    cache_dir: Path = DEFAULT_CACHE_DIR,
) -> list[list[str]]:
    """Top ``top_k`` items per query by cosine between MiniLM vectors (rows are L2-normalised)."""
    query_vectors, _ = embed_texts(list(queries), cache_dir=cache_dir)  # (queries, 384)
    scores = query_vectors @ item_embeddings.T  # (queries, items)
    top = np.argsort(-scores, axis=1)[:, :top_k]
    return [[item_ids[i] for i in row] for row in top]


def bm25_rankings(
    queries: Sequence[str], items: Sequence[CatalogueItem], *, top_k: int = 10
) -> list[list[str]]:
    from semantic_ids.lexical import import_bm25s

    bm25s = import_bm25s()
    corpus = [render_item_text(item) for item in items]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(corpus, stopwords="en", show_progress=False), show_progress=False)
    tokens = bm25s.tokenize(list(queries), stopwords="en", show_progress=False)
    k = min(top_k, len(items))
    results, _ = retriever.retrieve(tokens, k=k, show_progress=False)  # (queries, k) corpus indices
    return [[items[int(i)].item_id for i in row] for row in results]
