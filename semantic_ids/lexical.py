"""Lexical retrieval over the item text: BM25 (``bm25s``) plus typo-tolerant title matching (``rapidfuzz``).

BM25 wins wherever a query names something the item text spells out (a title, a director, an actor)
and misses a title typed with a typo, because a misspelt word is simply not in its vocabulary. A
fuzzy match of the query's content words against each title's (``rapidfuzz``'s ``WRatio``: edit
distance, partial and token-set matching; stopwords left out of both, ``_title`` says why) covers that;
``bench/typo_titles.py`` measures the two against each other.

One item's lexical score is ``(bm25 / best bm25 of the query + 0.5 * title match) / 1.5``, in [0, 1]
whatever the query: it ranks the lexical retriever's finds. The threshold and the weight were chosen with
``bench/typo_titles.py`` on the demo catalogue's titles and held-out training phrasings (RESULTS.md):
threshold 70 with the weighted sum gives typo'd titles Hit@10 0.996 (BM25 alone 0.662) and leaves held-out
phrasings where BM25 has them (0.994); taking the max instead, or threshold 80, does worse on both.

Fusion weighs another score, ``evidence``: the same sum with the BM25 part times the query's
``coverage``, how much of the query its best document matched: the best document's BM25 over the ideal,
what a document would score that had every query word at its best (each known word's best score in the
catalogue; a word the catalogue never uses counts as much as its rarest word, being rarer still). A title
query matched in full has coverage near 1; "something that will give me nightmares", whose best document
matches only "nightmares", a fraction. Relative to the best document alone, that junk match had the full
score, and fusion ranked it above the model's and the dense source's finds (RESULTS.md, issue 9).
Coverage scales the whole query alike, so the lexical ranking itself is unchanged.

Queries also wrap what they name in words of their own ("a scary **movie**", "**show me** something"): a
film whose title holds such a word ("Bee Movie") would match on it alone. The catalogue's query
configuration lists these framing words (openers, facet forms, training templates:
``QueryTemplates.framing_text``); the index keeps them and leaves them out of queries, never out of the
item text, so a title query still finds its title through the fuzzy match and the title's other words.

On disk (the bundle's ``lexical/`` folder) the index is bm25s's own pickle-free format (CSC score
arrays as ``.npy`` read with ``allow_pickle=False``, vocabulary and parameters as JSON), plus our
``index.json``: the catalogue hash and the item order it was built for, checked at load.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from rapidfuzz import fuzz, process, utils

from semantic_ids.bundle import BundleMismatch, Manifest
from semantic_ids.item_text import render_row

logger = logging.getLogger(__name__)

INDEX_META = "index.json"
FORMAT = "bm25s+rapidfuzz/1"
STOPWORDS = "en"  # what the BM25 baseline uses, so lexical mode and the baseline agree
# A title match below this WRatio is noise (short titles partially match many queries); above it the
# match is rescaled to [0, 1]. The weight keeps a fuzzy title below an exact BM25 match.
TITLE_THRESHOLD = 70.0
TITLE_WEIGHT = 0.5


def import_bm25s() -> ModuleType:
    """``bm25s``, imported with JAX kept on the CPU.

    Where JAX is installed, importing bm25s runs a JAX operation (``bm25s.selection`` probes
    ``jax.lax.top_k``); on a GPU machine that starts JAX's CUDA backend, which takes 75 % of the GPU's
    memory by default. Measured on an H200: 106 GiB held by one service process, so a second one could
    not load its model. Nothing here uses JAX; ``JAX_PLATFORMS`` set by the caller is left alone."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    return importlib.import_module("bm25s")


@dataclass(frozen=True)
class LexicalScores:
    """One query's scores for every catalogue row, each (items,) in [0, 1]."""

    bm25: np.ndarray  # relative to the query's best document
    title: np.ndarray
    coverage: float  # how much of the query its best document matched, in [0, 1]

    @property
    def combined(self) -> np.ndarray:
        """The lexical ranking."""
        return (self.bm25 + TITLE_WEIGHT * self.title) / (1.0 + TITLE_WEIGHT)

    @property
    def evidence(self) -> np.ndarray:
        """What fusion weighs: the BM25 part scaled by how much of the query the best document matched."""
        return (self.coverage * self.bm25 + TITLE_WEIGHT * self.title) / (1.0 + TITLE_WEIGHT)


def _tokens(texts: Sequence[str]) -> list[list[str]]:
    tokens: list[list[str]] = import_bm25s().tokenize(
        list(texts), stopwords=STOPWORDS, return_ids=False, show_progress=False
    )
    return tokens


class LexicalIndex:
    """BM25 over ``render_row`` texts and fuzzy matching over titles, rows in catalogue order."""

    def __init__(
        self,
        bm25: Any,
        item_ids: Sequence[str],
        titles: Sequence[str],
        catalogue_hash: str,
        framing: Sequence[str] = (),
    ) -> None:
        self.bm25 = bm25
        self.item_ids = list(item_ids)
        self.catalogue_hash = catalogue_hash
        self.framing = sorted(set(framing))  # query words left out of BM25 queries (tokens)
        self._framing = frozenset(self.framing)
        self._titles = [utils.default_process(title) for title in titles]  # lower-cased, punctuation gone
        self._stopwords = frozenset(import_bm25s().stopwords.STOPWORDS_EN)
        self._title_words = [self._content(title) or title for title in self._titles]
        self._word_best, self._rarest = _best_scores(bm25)

    @classmethod
    def build(
        cls, rows: Sequence[Mapping[str, Any]], catalogue_hash: str, framing_text: Sequence[str] = ()
    ) -> LexicalIndex:
        """Index bundle catalogue rows (``item_id``, ``title``, ``fields``); the words of ``framing_text``
        are left out of every query."""
        bm25 = import_bm25s().BM25()
        bm25.index(_tokens([render_row(row) for row in rows]), show_progress=False)
        framing = [word for words in _tokens(framing_text) for word in words] if framing_text else []
        item_ids, titles = [str(r["item_id"]) for r in rows], [str(r["title"]) for r in rows]
        return cls(bm25, item_ids, titles, catalogue_hash, framing)

    def __len__(self) -> int:
        return len(self.item_ids)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.bm25.save(str(folder), allow_pickle=False)
        meta = {
            "format": FORMAT,
            "catalogue_hash": self.catalogue_hash,
            "item_ids": self.item_ids,
            "framing_words": self.framing,
        }
        (folder / INDEX_META).write_text(json.dumps(meta) + "\n")

    @classmethod
    def load(cls, folder: Path, rows: Sequence[Mapping[str, Any]], catalogue_hash: str) -> LexicalIndex:
        """The index saved in ``folder``; ``BundleMismatch`` unless it was built for exactly ``rows``."""
        meta = json.loads((folder / INDEX_META).read_text())
        if meta.get("format") != FORMAT:
            raise BundleMismatch(
                f"lexical index {folder} has format {meta.get('format')!r}; expected {FORMAT}"
            )
        if meta.get("catalogue_hash") != catalogue_hash:
            raise BundleMismatch(
                f"lexical index {folder} was built for catalogue {str(meta.get('catalogue_hash'))[:12]}, "
                f"but the bundle's catalogue is {catalogue_hash[:12]}"
            )
        item_ids = [str(row["item_id"]) for row in rows]
        if meta.get("item_ids") != item_ids:
            raise BundleMismatch(
                f"lexical index {folder} lists its items in another order than the catalogue"
            )
        bm25 = import_bm25s().BM25.load(str(folder), allow_pickle=False, show_progress=False, verbosity=0)
        if int(bm25.scores["num_docs"]) != len(rows):
            raise BundleMismatch(
                f"lexical index {folder} holds {bm25.scores['num_docs']} documents for {len(rows)} items"
            )
        framing = [str(word) for word in meta.get("framing_words", [])]  # none in older bundles
        return cls(bm25, item_ids, [str(row["title"]) for row in rows], catalogue_hash, framing)

    def scores(self, query: str) -> LexicalScores:
        bm25, coverage = self._bm25(query)
        return LexicalScores(bm25=bm25, title=self._title(query), coverage=coverage)

    def top(self, query: str, n: int) -> list[tuple[int, float]]:
        """The ``n`` best rows by combined score, best first, rows with score 0 left out."""
        combined = self.scores(query).combined
        n = min(n, len(combined))
        best = np.argpartition(-combined, n - 1)[:n]
        ranked = best[np.argsort(-combined[best], kind="stable")]
        return [(int(row), float(combined[row])) for row in ranked if combined[row] > 0.0]

    def _bm25(self, query: str) -> tuple[np.ndarray, float]:
        """(items,) BM25 over the query's best document's, and the query's coverage."""
        words = [word for word in _tokens([query])[0] if word not in self._framing]
        ids = self.bm25.get_tokens_ids(words)  # the known words only
        if not ids:
            return np.zeros(len(self), dtype=np.float32), 0.0
        raw = np.asarray(self.bm25.get_scores_from_ids(ids), dtype=np.float32)  # (items,)
        best = float(raw.max())
        if best <= 0.0:
            return raw, 0.0
        ideal = float(self._word_best[ids].sum()) + (len(words) - len(ids)) * self._rarest
        return raw / best, min(1.0, best / ideal)

    def _content(self, text: str) -> str:
        """A processed text's words without the stopwords (empty when it has no others)."""
        return " ".join(word for word in text.split() if word not in self._stopwords)

    def _title(self, query: str) -> np.ndarray:
        """(items,) the fuzzy title match, over content words: WRatio's token-set part scores any shared
        word 100, so with the stopwords in, "looking for the marix" matched every title with "the" in it
        as well as The Matrix (~160 ties in 1,000 films; its typo'd titles in phrases were found 0.90 of
        the time against 0.98 without them, bench/RESULTS.md). A query of stopwords alone ("into the")
        is matched whole against whole titles."""
        processed = utils.default_process(query)
        content = self._content(processed)
        query_text, titles = (content, self._title_words) if content else (processed, self._titles)
        ratios: np.ndarray = process.cdist(
            [query_text], titles, scorer=fuzz.WRatio, dtype=np.float32, workers=1
        )[0]  # (items,) in [0, 100]
        return np.clip((ratios - TITLE_THRESHOLD) / (100.0 - TITLE_THRESHOLD), 0.0, 1.0).astype(np.float32)


def _best_scores(bm25: Any) -> tuple[np.ndarray, float]:
    """Each vocabulary word's best score in any document, and the best of all (the rarest word's)."""
    data = np.asarray(bm25.scores["data"], dtype=np.float32)  # CSC: one column of documents per word
    indptr = np.asarray(bm25.scores["indptr"], dtype=np.int64)
    best = np.zeros(len(indptr) - 1, dtype=np.float32)
    used = np.flatnonzero(indptr[1:] > indptr[:-1])
    if len(used):
        best[used] = np.maximum.reduceat(data, indptr[used])
    return best, float(best.max(initial=0.0))


def bundle_lexical_index(
    bundle_dir: Path, manifest: Manifest, rows: Sequence[Mapping[str, Any]]
) -> LexicalIndex:
    """The bundle's lexical index, checked against its catalogue; built from ``rows`` (its
    ``catalogue.jsonl``) for a bundle written before bundles carried one: well under a second for
    1,000 items, a few seconds for the full catalogue, once at start-up."""
    content_hash = manifest.catalogue.content_hash
    folder = manifest.retrieval.lexical_index if manifest.retrieval is not None else None
    if folder is None:
        logger.warning("bundle %s has no lexical index: building it from its catalogue", manifest.bundle_id)
        return LexicalIndex.build(rows, content_hash)
    if not (bundle_dir / folder / INDEX_META).is_file():
        raise BundleMismatch(f"bundle {manifest.bundle_id} names lexical index {folder!r}, which it lacks")
    return LexicalIndex.load(bundle_dir / folder, rows, content_hash)
