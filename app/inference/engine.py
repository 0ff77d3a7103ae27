"""The recommender engine: the bundle's model loaded once behind a small blocking interface.

Nothing here knows about HTTP or the database. ``recommend`` blocks for the length of a beam search,
so callers run it off the event loop (the micro-batcher gives it a thread of its own). The three
retrieval modes (``semantic_ids.hybrid``) share the one model, the bundle's lexical index and, when the
bundle has item vectors, its dense index with the query encoder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch

from app.catalogue_updates import LiveCatalogue
from app.inference.model_loading import LoadedModel, load_recommender_model
from semantic_ids.bundle import Manifest
from semantic_ids.causal_lm import flush_denormals
from semantic_ids.decoding import ConstrainedDecoder, build_prompt
from semantic_ids.dense import DenseRetriever
from semantic_ids.hybrid import HybridRanker, Recommendation
from semantic_ids.ids import IdScheme
from semantic_ids.trie import PrefixTrie

logger = logging.getLogger(__name__)

_WARM_UP_QUERIES = ["a warm-up query", "another, somewhat longer warm-up query to exercise padding"]


class QueryRejected(ValueError):
    """A query the tokenizer cannot encode; it is refused before it joins a batch."""


class Recommender:
    def __init__(
        self, ranker: HybridRanker, manifest: Manifest, *, num_beams: int, loaded: LoadedModel | None = None
    ) -> None:
        # Replaced whole by ``swap`` when the catalogue changes: a batch keeps the ranker it started with.
        self.ranker = ranker
        self.manifest = manifest
        self.num_beams = num_beams
        self.loaded = loaded  # what the bundle loaded as: its base catalogue and live state, for updates
        live = None if loaded is None else loaded.live
        self.catalogue_hash = manifest.catalogue.content_hash if live is None else live.content_hash
        # The semantic-ID tokens are added in one contiguous run starting at [SEM_START].
        self._first_semantic_token = ranker.decoder.token_ids.sem_start
        self._prompt_overhead = len(self._prompt_ids(""))  # [REC][SEM_START] (and any BOS)
        self.on_fusion: Callable[[float], None] | None = None  # told the seconds each hybrid fusion took
        self.on_dense: Callable[[float], None] | None = None  # told the seconds each dense retrieval took

    @property
    def decoder(self) -> ConstrainedDecoder:
        return self.ranker.decoder

    @classmethod
    def load(
        cls,
        bundle_dir: Path,
        base_models_dir: Path,
        *,
        device: str,
        num_beams: int,
        precision: str = "auto",
        torch_threads: int | None = None,
        expected_catalogue_hash: str | None = None,
        with_dense: bool = False,
    ) -> Recommender:
        """Load the bundle; ``BundleMismatch`` when it does not fit the base model or the catalogue."""
        flush_denormals()  # before the first parallel work where it can be (semantic_ids.causal_lm)
        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        started = time.perf_counter()
        loaded = load_recommender_model(
            bundle_dir,
            base_models_dir,
            device,
            precision=precision,
            expected_catalogue_hash=expected_catalogue_hash,
            with_dense=with_dense,
        )
        logger.info(
            "bundle %s (%d items) ready to decode after %.1f s",
            loaded.manifest.bundle_id,
            len(loaded.trie),
            time.perf_counter() - started,
        )
        return cls(loaded.ranker(), loaded.manifest, num_beams=num_beams, loaded=loaded)

    @property
    def bundle_id(self) -> str:
        return self.manifest.bundle_id

    @property
    def scheme(self) -> IdScheme:
        return self.manifest.semantic_ids.scheme

    @property
    def item_count(self) -> int:
        return len(self.decoder.trie)

    def prepare(self, live: LiveCatalogue) -> HybridRanker:
        """A ranker over ``live`` with this one's model and fusion: a new trie and indexes, built aside
        while the current ranker serves (about 0.1 s for 1,000 items, mostly the lexical index)."""
        current = self.ranker
        ids = live.ids
        trie = PrefixTrie(ids, self.scheme)
        decoder = current.decoder.over(trie)
        lexical = current.lexical.rebuilt(live.rows, live.content_hash)
        dense = None
        if current.dense is not None:
            dense = DenseRetriever(live.dense_index(current.dense.index.model), current.dense.encoder)
        return HybridRanker(decoder, lexical, ids, current.fusion, dense)

    def swap(self, ranker: HybridRanker, live: LiveCatalogue) -> None:
        """Serve ``ranker`` (from ``prepare``) from the next batch on."""
        self.ranker = ranker
        self.catalogue_hash = live.content_hash

    def beams_for(self, k: int) -> int:
        """Beams used for a request of ``k`` items: never fewer than ``k``."""
        return max(self.num_beams, k)

    def query_tokens(self, query: str) -> int:
        """Tokens in ``query``, tokenised on its own: text the tokenizer cannot encode, or that still
        reads as the model's own control tokens, is refused here (``QueryRejected``), before it could
        fail or bend a batch it shares with others."""
        prompt = self._prompt_ids(query)
        if sum(1 for token in prompt if token >= self._first_semantic_token) != 2:  # [REC][SEM_START]
            raise QueryRejected("query: holds text the model would read as its own control tokens")
        return len(prompt) - self._prompt_overhead

    def _prompt_ids(self, query: str) -> list[int]:
        try:
            input_ids: list[int] = self.decoder.tokenizer(build_prompt(query))["input_ids"]
        except Exception as error:  # tokenizers raise TypeError, ValueError or their own exceptions
            raise QueryRejected(f"query: the text cannot be tokenised ({type(error).__name__})") from error
        return input_ids

    def recommend(self, queries: list[str], k: int, mode: str = "hybrid") -> list[list[Recommendation]]:
        """Up to ``k`` existing items per query, best first (all of them when the catalogue is smaller)."""
        return self.ranker.rank(
            queries, k, mode, num_beams=self.beams_for(k), on_fusion=self.on_fusion, on_dense=self.on_dense
        )

    def warm_up(self) -> None:
        """A hybrid rank of a padded pair (beam search with forced candidates, lexical and dense
        retrieval), so the first request pays no one-off set-up cost."""
        started = time.perf_counter()
        self.recommend(_WARM_UP_QUERIES, k=1, mode="hybrid")
        logger.info("warmed up in %.2f s", time.perf_counter() - started)
