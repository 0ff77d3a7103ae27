"""Retrieval baselines on the same queries as the fine-tuned model: dense (MiniLM cosine) and BM25.

Dense reads the items through ``training.data.item_text.render_item_text``, the text the IDs were
learned from. BM25 indexes **the whole row** (``full_row_text``: the title and every field, every cast
member included), as a user would build it in ten minutes: a baseline over the short item text (six cast
names, no writer) was weaker than what anyone comparing systems would try, and hid that the service's own
lexical source read that short text too (issue 24).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.data.embeddings import DEFAULT_CACHE_DIR, embed_texts
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


def full_row_text(item: CatalogueItem) -> str:
    """The title and the value of every field, lists joined: the plain BM25 baseline's document."""
    parts = [item.title]
    for value in item.fields.values():
        parts.extend(str(v) for v in value) if isinstance(value, list) else parts.append(str(value))
    return " ".join(parts)


def bm25_rankings(
    queries: Sequence[str], items: Sequence[CatalogueItem], *, top_k: int = 10
) -> list[list[str]]:
    from semantic_ids.lexical import import_bm25s

    bm25s = import_bm25s()
    corpus = [full_row_text(item) for item in items]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(corpus, stopwords="en", show_progress=False), show_progress=False)
    tokens = bm25s.tokenize(list(queries), stopwords="en", show_progress=False)
    k = min(top_k, len(items))
    results, _ = retriever.retrieve(tokens, k=k, show_progress=False)  # (queries, k) corpus indices
    return [[items[int(i)].item_id for i in row] for row in results]
