"""Lexical retrieval over every field of the catalogue row: field-weighted BM25 (``bm25s``, one index per
group of fields), typo-tolerant title matching (``rapidfuzz``), and the query's structured attributes.

**Every field.** The text the LLM and MiniLM see (``item_text.py``) is short on purpose: six cast names,
no writer, no production company. A lexical index has no such window, and an actor billed twelfth is
still someone a user may name (issue 24: plain BM25 over the whole row found such films, the service
did not). So each row is indexed field by field, in groups (``FIELD_GROUPS``): the title, people (every
cast member, director, writer, production company), categories (genres), short facts (year, rating,
country, language, awards, figures) and prose (a critics' consensus, a description). A row's score is
``sum_g weight_g * BM25_g(query, row's group g)`` (BM25F-like: names and titles weigh more than
prose; ``GROUP_WEIGHTS``, chosen on training-side queries, bench/HISTORY.md). Text is folded before
tokenising (``query_attributes.fold``: case and accents gone, so "Penelope Cruz" finds "Penélope
Cruz"), and one token per word lets a surname alone ("Reeves", "Nolan") match.

**Typos.** BM25 misses a title typed with a typo, because a misspelt word is simply not in its
vocabulary. A fuzzy match of the query's content words against each title's (``rapidfuzz``'s
``WRatio``: edit distance, partial and token-set matching; stopwords left out of both, ``_title`` says
why) covers that; ``bench/typo_titles.py`` measures the two against each other.

**Attributes.** Decades, years, genres, ratings, countries and languages, in four languages, are read
from the query (``semantic_ids.query_attributes``) and scored as constraints, not as words: BM25 runs
on the rest of the query, and ``LexicalScores.satisfied`` says which fraction of the constraints each
row meets. The lexical ranking is ``satisfied`` first, then the combined score; fusion does the same.

One item's lexical score is ``(bm25 / best bm25 of the query + 0.5 * title match) / 1.5``, in [0, 1]
whatever the query: it ranks the lexical retriever's finds. The threshold and the weight were chosen with
``bench/typo_titles.py`` on the demo catalogue's titles and held-out training phrasings (bench/HISTORY.md).

Fusion weighs another score, ``evidence``: the same sum with the BM25 part times the query's
``coverage``, how much of the query its best document matched: the best document's BM25 over the ideal,
what a document would score that had every query word at its best (each known word's best weighted score
in the catalogue; a word the catalogue never uses counts as much as its rarest word, being rarer still).
A name matched in full has coverage near 1; "something that will give me nightmares", whose best
document matches only "nightmares", a fraction. ``decisive`` is the BM25 part of the evidence alone:
near 1 for the rows that match all of a query's content words, which fusion keeps in the top k.

Queries also wrap what they name in words of their own ("a scary **movie**", "**show me** something"): a
film whose title holds such a word ("Bee Movie") would match on it alone. The catalogue's query
configuration lists these framing words (openers, facet forms, training templates:
``QueryTemplates.framing_text``), and ``QUERY_FUNCTION_WORDS`` adds the function words of French,
Spanish and German queries; the index keeps them and leaves them out of queries, never out of the item
text, so a title query still finds its title through the fuzzy match and the title's other words.

On disk (the bundle's ``lexical/`` folder) each group is bm25s's own pickle-free format (CSC score
arrays as ``.npy`` read with ``allow_pickle=False``, vocabulary and parameters as JSON) in a folder of
its own, plus our ``index.json``: the format, the groups and their weights, the catalogue hash and the
item order it was built for, checked at load.
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

from semantic_ids.bundle import BundleMismatch, Manifest, row_item_ids
from semantic_ids.named_people import NamedPeople
from semantic_ids.query_attributes import AttributeFields, ParsedQuery, RowAttributes, fold
from semantic_ids.row_groups import RowGroups

logger = logging.getLogger(__name__)

INDEX_META = "index.json"
FORMAT = "bm25f+rapidfuzz/3"  # /3: the row lookups (``RowLookups``) are stored, not built at every load
PREVIOUS_FORMAT = "bm25f+rapidfuzz/2"  # read too: its row lookups are built from the rows at load
LOOKUPS_DIR = "lookups"
TITLES_FILE, TITLE_CONTENT_FILE, GRAM_FILES = "titles.txt", "title_content.txt", "title_grams"
STOPWORDS = "en"  # what bm25s drops from items and queries alike
# A title match below this WRatio is noise (short titles partially match many queries); above it the
# match is rescaled to [0, 1]. The weight keeps a fuzzy title below an exact BM25 match.
TITLE_THRESHOLD = 70.0
# Past this many titles the fuzzy match runs on the titles that share the most character trigrams with
# the query (``TitleGrams``), not on every title: WRatio costs ~2 microseconds a title, 2 s a query at
# 10^6 items (bench/RESULTS.md, Scale). Below it, every title is matched, as always.
TITLE_PREFILTER_MIN = 50_000
TITLE_CANDIDATES = 2_000
TITLE_WEIGHT = 0.5
# Which group each field of a row goes to, and how much each group weighs. A field not named here goes
# to "facts", or to "prose" when it is long text (over PROSE_CHARS on average).
FIELD_GROUPS = {
    "title": ("title",),
    "people": ("cast", "director", "writer", "production", "author", "authors", "artist", "artists",
               "creator", "brand", "publisher", "studio", "composer", "producer"),
    "categories": ("genres", "genre", "categories", "category", "tags"),
    "prose": ("consensus", "description", "summary", "plot", "overview"),
}  # fmt: skip
GROUP_WEIGHTS = {"title": 2.0, "people": 1.5, "categories": 1.0, "facts": 1.0, "prose": 0.5}
PROSE_CHARS = 160
# What meeting all of a query's attributes adds to a score in [0, 1] (the combined lexical score) or in
# [-1, 1] (a cosine): more than the score can make up, so rows meeting more of them rank first.
ATTRIBUTE_LEAD = 2.0
# Function words of French, Spanish and German queries ("un film avec ...", "películas de ..."), left
# out of queries like the framing words. Words that open titles ("die", "la", "el") and name particles
# ("de") stay in: "Die Hard" and "Robert De Niro" are matched on them.
QUERY_FUNCTION_WORDS = (
    "un", "une", "des", "du", "le", "les", "et", "avec", "dans", "pour", "sur", "film", "films", "je",
    "veux", "cherche", "moi", "una", "unas", "unos", "los", "las", "del", "con", "por", "para",
    "pelicula", "peliculas", "quiero", "busco", "y", "der", "das", "den", "dem", "ein", "eine", "einen",
    "mit", "und", "von", "aus", "im", "ich", "suche", "mochte", "filme",
)  # fmt: skip


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
    known_share: np.ndarray  # (items,) the share of the query's known words each row holds, weighted
    named: np.ndarray  # (items,) the share of the people the query names in full each row has
    satisfied: np.ndarray  # the fraction of the query's attribute constraints each row meets (ones: none)
    parsed: ParsedQuery

    @property
    def constrained(self) -> bool:
        return bool(self.parsed.constraints)

    @property
    def combined(self) -> np.ndarray:
        """The lexical score of each row, before the attributes."""
        return (self.bm25 + TITLE_WEIGHT * self.title) / (1.0 + TITLE_WEIGHT)

    @property
    def ranking(self) -> np.ndarray:
        """The lexical ranking: rows meeting more of the query's attributes first, then ``combined``."""
        return self.combined + ATTRIBUTE_LEAD * self.satisfied if self.constrained else self.combined

    @property
    def found(self) -> np.ndarray:
        """(items,) the rows the lexical source has anything for: a score, or an attribute met."""
        found: np.ndarray = self.combined > 0.0
        return found | (self.satisfied > 0.0) if self.constrained else found

    @property
    def evidence(self) -> np.ndarray:
        """What fusion weighs: the BM25 part scaled by how much of the query the best document matched."""
        return (self.coverage * self.bm25 + TITLE_WEIGHT * self.title) / (1.0 + TITLE_WEIGHT)

    @property
    def decisive(self) -> np.ndarray:
        """In [0, 1]: the share of the query's words that the catalogue knows which the row holds, in any
        field, each word weighing its best score (rare words, such as names, weigh most). 1 where a row
        has every such word: "Nick Frost" in a cast of twenty counts as fully as in a cast of two (BM25's
        length normalisation ranks them apart, not the match), and words no row has ("screenplay by
        Aaron Sorkin") do not make a full name match less decisive. A row with every person the query
        names in full (``semantic_ids.named_people``) is as decisive, whatever other words the query has:
        "alan dale small role" names Alan Dale, whose films hold half of its known words."""
        decisive: np.ndarray = np.maximum(self.known_share, self.named)
        return decisive


def field_group(key: str, value: Any) -> str:
    for group, keys in FIELD_GROUPS.items():
        if key in keys:
            return group
    text = _text(value)
    return "prose" if len(text) > PROSE_CHARS else "facts"


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(part) for part in value)
    return "" if value is None or isinstance(value, dict) else str(value)


def group_texts(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Per group, every row's text of that group's fields (folded), rows in catalogue order."""
    texts: dict[str, list[list[str]]] = {group: [[] for _ in rows] for group in GROUP_WEIGHTS}
    for index, row in enumerate(rows):
        texts["title"][index].append(str(row["title"]))
        for key, value in row.get("fields", {}).items():
            texts[field_group(key, value)][index].append(_text(value))
    return {group: [fold(" ".join(parts)) for parts in by_row] for group, by_row in texts.items()}


def _tokens(texts: Sequence[str]) -> list[list[str]]:
    tokens: list[list[str]] = import_bm25s().tokenize(
        [fold(text) for text in texts], stopwords=STOPWORDS, return_ids=False, show_progress=False
    )
    return tokens


@dataclass(frozen=True)
class RowLookups:
    """What the lexical index looks rows up by besides BM25, built from the rows once and kept in the
    index's ``lookups/`` folder: at a million rows building them took about a minute of every start-up."""

    titles: list[str]  # (rows,) the titles as the fuzzy match reads them (folded, processed)
    title_words: list[str]  # (rows,) the same without stopwords (or whole, when that leaves nothing)
    grams: TitleGrams | None  # the titles' trigrams past TITLE_PREFILTER_MIN rows
    attributes: RowAttributes
    people: NamedPeople

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        # A processed title is words and spaces: never a line break.
        (folder / TITLES_FILE).write_text("\n".join(self.titles), encoding="utf-8")
        (folder / TITLE_CONTENT_FILE).write_text("\n".join(self.title_words), encoding="utf-8")
        if self.grams is not None:
            self.grams.save(folder)
        self.attributes.save(folder)
        self.people.save(folder)

    @classmethod
    def load(cls, folder: Path, rows: Sequence[Mapping[str, Any]], fields: AttributeFields) -> RowLookups:
        """``BundleMismatch`` when a file is missing or does not cover ``rows``."""
        try:
            titles = (folder / TITLES_FILE).read_text(encoding="utf-8").split("\n")
            title_words = (folder / TITLE_CONTENT_FILE).read_text(encoding="utf-8").split("\n")
            attributes = RowAttributes.load(folder, fields)
        except (OSError, ValueError, KeyError) as error:
            raise BundleMismatch(
                f"lexical index {folder.parent}: cannot read its row lookups: {error}"
            ) from error
        if not len(titles) == len(title_words) == attributes.size == len(rows):
            raise BundleMismatch(
                f"lexical index {folder.parent}: row lookups of {len(titles)} titles and "
                f"{attributes.size} rows' attributes for {len(rows)} items"
            )
        grams = None
        if len(rows) >= TITLE_PREFILTER_MIN:
            grams = TitleGrams.load(folder, len(rows))
        return cls(titles, title_words, grams, attributes, NamedPeople.load(folder, len(rows)))


class LexicalIndex:
    """Field-weighted BM25 over every field, fuzzy matching over titles, and the rows' attributes, rows in
    catalogue order."""

    def __init__(
        self,
        groups: Mapping[str, Any],
        rows: Sequence[Mapping[str, Any]],
        catalogue_hash: str,
        framing: Sequence[str] = (),
        weights: Mapping[str, float] | None = None,
        attribute_fields: AttributeFields | None = None,
        derived: RowLookups | None = None,
    ) -> None:
        self.groups = dict(groups)  # group name -> bm25s.BM25 over that group's text
        self.weights = dict(weights or GROUP_WEIGHTS)
        self.item_ids = row_item_ids(rows)
        self.catalogue_hash = catalogue_hash
        self.framing = sorted(set(framing))  # query words left out of BM25 queries (tokens)
        self._framing = frozenset(self.framing) | frozenset(QUERY_FUNCTION_WORDS)
        self._stopwords = frozenset(import_bm25s().stopwords.STOPWORDS_EN)
        self._word_best = {name: _best_scores(bm25) for name, bm25 in self.groups.items()}
        self._rarest = max((self.weights[n] * best[1] for n, best in self._word_best.items()), default=0.0)
        self._lookups = derived or self._derive(rows, attribute_fields)
        self._titles, self._title_words = self._lookups.titles, self._lookups.title_words
        self._title_grams = self._lookups.grams
        self.attributes, self.people = self._lookups.attributes, self._lookups.people
        # item id -> (its row, its tokens per group), kept by ``rebuilt`` for the next change
        self._tokens_by_row: dict[str, tuple[Mapping[str, Any], dict[str, list[str]]]] | None = None

    @classmethod
    def build(
        cls, rows: Sequence[Mapping[str, Any]], catalogue_hash: str, framing_text: Sequence[str] = ()
    ) -> LexicalIndex:
        """Index bundle catalogue rows (``item_id``, ``title``, ``fields``); the words of ``framing_text``
        are left out of every query."""
        bm25s = import_bm25s()
        groups = {}
        for name, texts in group_texts(rows).items():
            if any(texts):  # a catalogue with no prose has no prose index
                groups[name] = bm25s.BM25()
                groups[name].index(_tokens(texts), show_progress=False)
        framing = [word for words in _tokens(framing_text) for word in words] if framing_text else []
        return cls(groups, rows, catalogue_hash, framing)

    def rebuilt(self, rows: Sequence[Mapping[str, Any]], catalogue_hash: str) -> LexicalIndex:
        """This index's configuration (framing words, group weights, attribute fields) over other rows:
        the served catalogue after items were added, changed or deleted. The tokens of rows this index
        already held, unchanged, are reused: a change re-reads only its own rows' text."""
        bm25s = import_bm25s()
        known = self._tokens_by_row or {}
        fresh = [row for row in rows if known.get(str(row["item_id"]), (None,))[0] != row]
        tokens_of = {name: dict(zip((str(r["item_id"]) for r in fresh), _tokens(texts), strict=True))
                     for name, texts in group_texts(fresh).items() if name in self.groups}  # fmt: skip
        fresh_ids = {str(row["item_id"]) for row in fresh}
        cache: dict[str, tuple[Mapping[str, Any], dict[str, list[str]]]] = {}
        for row in rows:
            item_id = str(row["item_id"])
            if item_id in fresh_ids:
                cache[item_id] = (row, {name: tokens_of[name][item_id] for name in self.groups})
            else:
                cache[item_id] = known[item_id]
        groups = {}
        for name in self.groups:
            groups[name] = bm25s.BM25()
            groups[name].index([cache[str(row["item_id"])][1][name] for row in rows], show_progress=False)
        index = type(self)(groups, rows, catalogue_hash, self.framing, self.weights, self.attributes.fields)
        index._tokens_by_row = cache
        return index

    def _derive(self, rows: Sequence[Mapping[str, Any]], fields: AttributeFields | None) -> RowLookups:
        """The row lookups built from the rows (the processed titles, their trigrams past
        ``TITLE_PREFILTER_MIN``, the rows' attributes and named people)."""
        titles = [utils.default_process(fold(str(row["title"]))) for row in rows]
        title_words = [self._content(title) or title for title in titles]
        grams = TitleGrams.build(title_words) if len(rows) >= TITLE_PREFILTER_MIN else None
        attributes = RowAttributes.build(rows, fields)
        return RowLookups(
            titles, title_words, grams, attributes, NamedPeople.build(rows, FIELD_GROUPS["people"])
        )

    def __len__(self) -> int:
        return len(self.item_ids)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, bm25 in self.groups.items():
            bm25.save(str(folder / name), allow_pickle=False)
        self._lookups.save(folder / LOOKUPS_DIR)
        meta = {
            "format": FORMAT,
            "catalogue_hash": self.catalogue_hash,
            "item_ids": self.item_ids,
            "framing_words": self.framing,
            "group_weights": {name: self.weights[name] for name in self.groups},
            "attribute_fields": self.attributes.fields.model_dump(),
        }
        (folder / INDEX_META).write_text(json.dumps(meta) + "\n")

    @classmethod
    def load(cls, folder: Path, rows: Sequence[Mapping[str, Any]], catalogue_hash: str) -> LexicalIndex:
        """The index saved in ``folder``; ``BundleMismatch`` unless it was built for exactly ``rows``."""
        meta = json.loads((folder / INDEX_META).read_text())
        if meta.get("format") not in (FORMAT, PREVIOUS_FORMAT):
            raise BundleMismatch(
                f"lexical index {folder} has format {meta.get('format')!r}; expected {FORMAT}"
            )
        if meta.get("catalogue_hash") != catalogue_hash:
            raise BundleMismatch(
                f"lexical index {folder} was built for catalogue {str(meta.get('catalogue_hash'))[:12]}, "
                f"but the bundle's catalogue is {catalogue_hash[:12]}"
            )
        if meta.get("item_ids") != row_item_ids(rows):
            raise BundleMismatch(
                f"lexical index {folder} lists its items in another order than the catalogue"
            )
        bm25s = import_bm25s()
        weights = {str(name): float(weight) for name, weight in meta["group_weights"].items()}
        groups = {}
        for name in weights:
            groups[name] = bm25s.BM25.load(
                str(folder / name), allow_pickle=False, show_progress=False, verbosity=0
            )
            if int(groups[name].scores["num_docs"]) != len(rows):
                raise BundleMismatch(
                    f"lexical index {folder / name} holds {groups[name].scores['num_docs']} documents "
                    f"for {len(rows)} items"
                )
        framing = [str(word) for word in meta.get("framing_words", [])]
        fields = AttributeFields(**meta["attribute_fields"])
        # The previous format kept no row lookups: they are built from the rows, as it always did.
        derived = RowLookups.load(folder / LOOKUPS_DIR, rows, fields) if meta["format"] == FORMAT else None
        return cls(groups, rows, catalogue_hash, framing, weights, fields, derived)

    def scores(self, query: str) -> LexicalScores:
        names = self.people.named(query)
        parsed = self.attributes.parse(query, keep=names)
        bm25, coverage, known_share = self._bm25(parsed.rest)
        return LexicalScores(
            bm25=bm25,
            title=self._title(query),
            coverage=coverage,
            known_share=known_share,
            named=self.people.share_of(names),
            satisfied=self.attributes.satisfied(parsed),
            parsed=parsed,
        )

    def top(self, query: str, n: int) -> list[tuple[int, float]]:
        """The ``n`` best rows by the lexical ranking, best first, with their combined scores; rows with
        nothing for them (no score, no attribute met) left out."""
        scores = self.scores(query)
        ranking, combined = scores.ranking, scores.combined
        n = min(n, len(ranking))
        best = np.argpartition(-ranking, n - 1)[:n]
        ranked = best[np.argsort(-ranking[best], kind="stable")]
        found = scores.found
        return [(int(row), float(combined[row])) for row in ranked if found[row]]

    def _bm25(self, query: str) -> tuple[np.ndarray, float, np.ndarray]:
        """(items,) weighted BM25 over the query's best document's, the query's coverage, and (items,)
        the share of the query's known words each row holds, each word weighing its best score."""
        words = list(dict.fromkeys(w for w in _tokens([query])[0] if w not in self._framing))
        raw = np.zeros(len(self), dtype=np.float32)
        if not words:
            return raw, 0.0, raw.copy()
        best_of_word = np.zeros(len(words), dtype=np.float32)  # each word's best weighted score anywhere
        holds = np.zeros((len(words), len(self)), dtype=bool)  # (words, items) the row has the word
        for name, bm25 in self.groups.items():
            weight, vocabulary, word_best = self.weights[name], bm25.vocab_dict, self._word_best[name][0]
            for i, word in enumerate(words):
                token = vocabulary.get(word)
                if token is None:
                    continue
                scores = np.asarray(bm25.get_scores_from_ids([token]), dtype=np.float32)  # (items,)
                raw += weight * scores
                holds[i] |= scores > 0.0
                best_of_word[i] = max(best_of_word[i], weight * word_best[token])
        best = float(raw.max())
        if best <= 0.0:
            return raw, 0.0, np.zeros(len(self), dtype=np.float32)
        ideal = float(np.where(best_of_word > 0.0, best_of_word, self._rarest).sum())
        share = (best_of_word[:, None] * holds).sum(axis=0) / float(best_of_word.sum())  # (items,)
        return raw / best, min(1.0, best / ideal), share.astype(np.float32)

    def _content(self, text: str) -> str:
        """A processed text's words without the stopwords (empty when it has no others)."""
        return " ".join(word for word in text.split() if word not in self._stopwords)

    def _title(self, query: str) -> np.ndarray:
        """(items,) the fuzzy title match, over content words: WRatio's token-set part scores any shared
        word 100, so with the stopwords in, "looking for the marix" matched every title with "the" in it
        as well as The Matrix (~160 ties in 1,000 films; its typo'd titles in phrases were found 0.90 of
        the time against 0.98 without them, bench/HISTORY.md). A query of stopwords alone ("into the")
        is matched whole against whole titles. WRatio stops early below ``TITLE_THRESHOLD`` (``score_cutoff``:
        0 there), which the clip below maps to 0 anyway: 1.61 -> 1.15 ms a query over 1,000 titles."""
        processed = utils.default_process(fold(query))
        content = self._content(processed)
        query_text, titles = (content, self._title_words) if content else (processed, self._titles)
        if self._title_grams is None:
            ratios: np.ndarray = process.cdist(
                [query_text], titles, scorer=fuzz.WRatio, score_cutoff=TITLE_THRESHOLD, dtype=np.float32
            )[0]  # (items,) in [0, 100]
        else:  # a large catalogue: only the titles sharing the most trigrams with the query
            rows = self._title_grams.candidates(query_text, TITLE_CANDIDATES)
            ratios = np.zeros(len(titles), dtype=np.float32)
            ratios[rows] = process.cdist(
                [query_text], [titles[row] for row in rows], scorer=fuzz.WRatio, score_cutoff=TITLE_THRESHOLD,
                dtype=np.float32,
            )[0]  # fmt: skip
        return np.clip((ratios - TITLE_THRESHOLD) / (100.0 - TITLE_THRESHOLD), 0.0, 1.0).astype(np.float32)


class TitleGrams:
    """Which titles hold which character trigrams (of their words, padded: " ma", "mat", ..., "ix "), to
    pick the titles worth a fuzzy match in a large catalogue. A typo changes two or three of a word's
    trigrams and leaves the rest: "the marix" still shares " ma", "mat"... with "The Matrix"."""

    def __init__(self, grams: RowGroups, count: int) -> None:
        self._rows = grams
        self._count = count

    @classmethod
    def build(cls, titles: Sequence[str]) -> TitleGrams:
        postings: dict[str, list[int]] = {}
        for row, title in enumerate(titles):
            for gram in _trigrams(title):
                postings.setdefault(gram, []).append(row)
        return cls(RowGroups.of(postings), len(titles))

    def save(self, folder: Path) -> None:
        self._rows.save(folder, GRAM_FILES)

    @classmethod
    def load(cls, folder: Path, count: int) -> TitleGrams:
        return cls(RowGroups.load(folder, GRAM_FILES), count)

    def candidates(self, text: str, limit: int) -> np.ndarray:
        """Up to ``limit`` rows, those sharing the most trigrams with ``text`` (none: no rows)."""
        hits = [found for gram in _trigrams(text) if (found := self._rows.get(gram)) is not None]
        if not hits:
            return np.zeros(0, dtype=np.int64)
        shared = np.bincount(np.concatenate(hits), minlength=self._count)  # (items,) trigrams in common
        held = np.flatnonzero(shared)
        if len(held) <= limit:
            return held
        return held[np.argpartition(-shared[held], limit - 1)[:limit]]


def _trigrams(text: str) -> set[str]:
    return {
        padded[i : i + 3]
        for word in text.split()
        for padded in (f" {word} ",)
        for i in range(len(padded) - 2)
    }


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
    ``catalogue.jsonl``) for a bundle written before bundles carried one, or one of an older format:
    well under a second for 1,000 items, a few seconds for the full catalogue, once at start-up."""
    content_hash = manifest.catalogue.content_hash
    folder = manifest.retrieval.lexical_index if manifest.retrieval is not None else None
    if folder is None:
        logger.warning("bundle %s has no lexical index: building it from its catalogue", manifest.bundle_id)
        return LexicalIndex.build(rows, content_hash)
    meta_path = bundle_dir / folder / INDEX_META
    if not meta_path.is_file():
        raise BundleMismatch(f"bundle {manifest.bundle_id} names lexical index {folder!r}, which it lacks")
    stored = json.loads(meta_path.read_text()).get("format")
    if stored != FORMAT and str(stored).startswith("bm25s+rapidfuzz/"):
        logger.warning(
            "bundle %s has a lexical index of format %s: building the %s one from its catalogue",
            manifest.bundle_id, stored, FORMAT,
        )  # fmt: skip
        framing = json.loads(meta_path.read_text()).get("framing_words", [])
        return LexicalIndex.build(rows, content_hash, [" ".join(framing)])
    return LexicalIndex.load(bundle_dir / folder, rows, content_hash)
