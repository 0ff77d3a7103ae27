"""The people a query names in full: every name of a row's people fields (cast, director, writer,
production company, author...), found as a phrase in the query, exactly or within a typo.

Why: a name is the most decisive thing a query can hold, yet the words around it dilute the lexical
evidence that fusion reads. "alan dale small role" holds "alan dale" in full, but "small" and "role" are
in other rows' text, so the rows with Alan Dale held about half of the query's known words and fell out
of fusion's decisive tier; the model and the dense neighbours, which never learnt a twelfth-billed actor,
then ranked other films first where full-row BM25 had his. Here the query's word n-grams are looked up
among the catalogue's names (folded: "Penélope Cruz" is "penelope cruz", "Samuel L. Jackson" is "samuel
l jackson"), longest first, and ``share`` says which fraction of the names the query holds each row has.
The words of a name found are read as no attribute (``AttributeParser.parse``'s ``keep``): "Frances
McDormand" asks for no French film.

Only names of two words or more count: a single word ("Madonna", or a surname alone) is as likely an
ordinary word of the query, and BM25 already weighs it by its rarity. A typo'd name ("russel crowe")
matches when its n-gram is within ``TYPO_RATIO`` of a name (rapidfuzz's ``ratio``, an edit-distance
similarity) that shares one of its words spelt right: checked only for n-grams that matched no name
exactly, against the few names holding one of their words, so a long query costs about a millisecond
(against every name, 27 ms for twelve words among the demo's 11,713 names).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rapidfuzz import fuzz, process

from semantic_ids.query_attributes import fold
from semantic_ids.row_groups import RowGroups

MAX_NAME_WORDS = 4  # "samuel l jackson", "guillermo del toro", "philip seymour hoffman": n-grams up to this
TYPO_RATIO = 90.0  # the least rapidfuzz ratio of a typo'd name to the catalogue's name
MIN_TYPO_CHARS = 8  # shorter n-grams are matched exactly only: a short name is one edit from many words
PEOPLE_FILES, NAME_WORD_FILES = "people", "people_words"  # their ``RowGroups`` in the lexical index


def _names(value: Any) -> Iterable[str]:
    """The names a people field holds: a list's entries, or a string's comma-separated parts."""
    parts = value if isinstance(value, list) else str(value or "").split(",")
    for part in parts:
        name = fold(str(part))
        if len(name.split()) >= 2:
            yield name


class NamedPeople:
    """Every multi-word name of the rows' ``fields`` (rows in catalogue order) and the rows that hold it.

    Built from the rows when a bundle is written (or its catalogue changes) and kept in the bundle's
    lexical index (``save``/``load``): a million rows hold ~14 million credits, a minute to group."""

    def __init__(self, people: RowGroups, words: RowGroups, size: int) -> None:
        self._people = people  # name -> the rows holding it
        self._words = words  # word -> the numbers of the names holding it, for the typo pass
        self.size = size

    @classmethod
    def build(cls, rows: Sequence[Mapping[str, Any]], fields: Iterable[str]) -> NamedPeople:
        keys = frozenset(fields)
        # Every credit as (raw value, row), then each distinct raw value folded once and the (name, row)
        # pairs grouped with array operations.
        parts: list[str] = []
        owners: list[int] = []
        for index, row in enumerate(rows):
            for key, value in row.get("fields", {}).items():
                if key in keys:
                    found = value if isinstance(value, list) else str(value or "").split(",")
                    parts.extend(str(part) for part in found)
                    owners.extend([index] * len(found))
        part_ids: dict[str, int] = {}
        codes = np.fromiter(
            (part_ids.setdefault(part, len(part_ids)) for part in parts), np.int64, len(parts)
        )
        name_ids: dict[str, int] = {}
        name_of_part = np.full(len(part_ids), -1, dtype=np.int64)
        for part, number in part_ids.items():
            for name in _names([part]):
                name_of_part[number] = name_ids.setdefault(name, len(name_ids))
        named = name_of_part[codes]
        held = named >= 0
        size = max(1, len(rows))
        # (name, row) pairs, each once, sorted by name then row: a name's rows are one run of them
        pairs = np.unique(named[held] * size + np.asarray(owners, dtype=np.int64)[held])
        bounds = np.searchsorted(pairs // size, np.arange(len(name_ids) + 1)).astype(np.int64)
        people = RowGroups(list(name_ids), (pairs % size).astype(np.int32), bounds)
        names_with: dict[str, list[int]] = {}
        for number, name in enumerate(people.keys):
            for word in dict.fromkeys(name.split()):
                names_with.setdefault(word, []).append(number)
        return cls(people, RowGroups.of(names_with), len(rows))

    def save(self, folder: Path) -> None:
        self._people.save(folder, PEOPLE_FILES)
        self._words.save(folder, NAME_WORD_FILES)

    @classmethod
    def load(cls, folder: Path, size: int) -> NamedPeople:
        return cls(RowGroups.load(folder, PEOPLE_FILES), RowGroups.load(folder, NAME_WORD_FILES), size)

    def __len__(self) -> int:
        return len(self._people)

    def named(self, query: str) -> list[str]:
        """The catalogue's names the query holds, in query order, each once."""
        words = fold(query).split()
        found: list[str] = []
        taken = [False] * len(words)
        for exact in (True, False):  # every exact match first: a typo pass must not split one
            for length in range(min(MAX_NAME_WORDS, len(words)), 1, -1):
                for start in range(len(words) - length + 1):
                    if any(taken[start : start + length]):
                        continue
                    name = self._match(" ".join(words[start : start + length]), exact)
                    if name is not None and name not in found:
                        found.append(name)
                        taken[start : start + length] = [True] * length
        return found

    def share(self, query: str) -> np.ndarray:
        """(items,) the fraction of the names the query holds that each row has; zeros when it names none."""
        return self.share_of(self.named(query))

    def share_of(self, names: Sequence[str]) -> np.ndarray:
        """(items,) the fraction of ``names`` (from ``named``) that each row has."""
        share = np.zeros(self.size, dtype=np.float32)
        for name in names:
            share[self._people[name]] += 1.0 / len(names)
        return share

    def _match(self, phrase: str, exact: bool) -> str | None:
        if exact:
            return phrase if phrase in self._people else None
        if len(phrase) < MIN_TYPO_CHARS:
            return None
        numbers = [self._words.get(word) for word in phrase.split()]
        near = {self._people.keys[n] for found in numbers if found is not None for n in found.tolist()}
        best = process.extractOne(phrase, sorted(near), scorer=fuzz.ratio, score_cutoff=TYPO_RATIO)
        return None if best is None else str(best[0])
