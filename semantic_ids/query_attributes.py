"""The structured attributes a query names (a year or decade, a genre, a rating, a country, a language), in
English, French, Spanish and German, and which catalogue rows satisfy them.

"une comédie des années 80", "a comedy from the eighties" and "Komödie aus den 80ern" all ask for
``genre = Comedy`` and ``1980 <= year < 1990``. Neither BM25 nor a sentence embedding knows that
"années 80" is a decade, so every system found such queries 0.13 of the time (issue 24). Here a query
is parsed into ``Constraint``s; ``RowAttributes.satisfied`` says, per catalogue row, which fraction of
them it meets; the retrieval modes rank by that first (``semantic_ids.fusion``): soft constraints, in
that a row meeting none is still ranked, after those that do.

Parsing works on folded text (lower case, no accents, punctuation as spaces: ``fold``). The words are
in ``attribute_words.yaml`` beside this file; decades in digits are the patterns below; years are 1880
to 2039, with "after"/"before"/"between" in the four languages. A phrase that is also in a row's
title satisfies its constraint for that row: "War of the Worlds" asks for the film, not for war films,
and the film "2012" is not from 2012.

Which catalogue fields hold the year, the genres, ... is ``AttributeFields``: found by name
(``detect``), or set in a bundle's manifest, so a book catalogue (``year``, ``categories``) keeps
working and a catalogue without such fields simply never has a constraint.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict

from semantic_ids.row_groups import RowGroups

LANGUAGES = ("en", "fr", "es", "de")
YEAR_RANGE = (1880, 2039)
ATTRIBUTE_KINDS = ("genre", "rating", "country", "language")  # the kinds matched by words
# RowAttributes' files in the lexical index (``RowGroups`` per kind as attribute_<kind>, and these)
YEARS_FILE, VALUES_FILE, TITLE_WORD_FILES = "years.npy", "attribute_values.json", "title_words"
_YEAR = r"(1[89]\d\d|20[0-3]\d)"
# The part of a decade a query asks for ("the early 90s", "mid-2000s", "fin des années 80", "a finales de
# los 90", "Mitte der 90er", "den frühen 90ern", "the late nineties"): its years from .. to. Read before the
# decade it qualifies; as a constraint it is soft like the others (rows just outside rank after).
DECADE_PARTS = {
    "early": (0, 3), "mid": (3, 6), "late": (6, 9),
    "debut des": (0, 3), "au debut des": (0, 3), "milieu des": (3, 6), "fin des": (6, 9),
    "principios de": (0, 3), "mediados de": (3, 6), "finales de": (6, 9), "fines de": (6, 9),
    "anfang der": (0, 3), "mitte der": (3, 6), "ende der": (6, 9),
    "fruhen": (0, 3), "fruehen": (0, 3), "spaten": (6, 9), "spaeten": (6, 9),
}  # fmt: skip
_PART_WORDS = "|".join(re.escape(p) for p in sorted(DECADE_PARTS, key=len, reverse=True))
_PART = f"(?:({_PART_WORDS}) )?"
# A decade in digits: "1990s", "90s" and "'90s" (folded: "90 s"), "années 90", "los (años) 90",
# "década de 1990", "90er", "1990er Jahre", "den 80ern"; group 1 is the part of it asked for, if any.
_DECADE_PATTERNS = tuple(
    re.compile(r"\b" + _PART + body)
    for body in (
        r"(1[89]\d0|20[0-3]0) ?s\b",
        r"(\d0) ?s\b",
        r"(?:annees|anos|los|las|decada de(?: los)?|decada del) ((?:1[89]|20)?\d0)\b",
        r"((?:1[89]|20)?\d0) ?er(?:n|jahre|jahren)?\b",
    )
)
_AFTER = r"(?:after|since|post|from|apres|depuis|desde|despues de|nach|seit|ab)"
_BEFORE = r"(?:before|pre|until|avant|antes de|vor|bis)"
_BETWEEN = re.compile(rf"\b(?:between|entre|zwischen) {_YEAR} (?:and|et|y|und) {_YEAR}\b")
_OPEN_RANGE = re.compile(rf"\b({_AFTER}|{_BEFORE}) {_YEAR}\b")
_LONE_YEAR = re.compile(rf"\b{_YEAR}\b")
# "from 2012" is that year; "after 2012" and "since 2012" are open ranges.
_EXACT_WORDS = frozenset({"from"})


_WORD = re.compile(r"[a-z0-9]+")


def fold(text: str) -> str:
    """Lower case, accents stripped, every run of other characters one space: how queries, titles and
    the word lists are compared ("Amélie" and "amelie" are one word, "sci-fi" is "sci fi")."""
    if text.isascii():  # most catalogue text: nothing to decompose (a third of an index build otherwise)
        plain = text.lower()
    else:
        decomposed = unicodedata.normalize("NFKD", text)
        plain = "".join(c for c in decomposed if not unicodedata.combining(c)).lower().replace("ß", "ss")
    return " ".join(_WORD.findall(plain))


class AttributeFields(BaseModel):
    """Which catalogue field holds each attribute (None: the catalogue has none)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    year: str | None = None
    genre: str | None = None
    rating: str | None = None
    country: str | None = None
    language: str | None = None

    @classmethod
    def detect(cls, rows: Sequence[Mapping[str, Any]]) -> AttributeFields:
        """The first field of each kind's usual names that some row has."""
        names = {
            "year": ("year", "release_year", "published_year"),
            "genre": ("genres", "genre", "categories", "category"),
            "rating": ("mpaa_rating", "rating", "age_rating"),
            "country": ("country", "countries"),
            "language": ("language", "languages"),
        }
        present = {key for row in rows[:2000] for key in _fields(row)}
        return cls(**{kind: next((k for k in keys if k in present), None) for kind, keys in names.items()})


@dataclass(frozen=True)
class Constraint:
    """One attribute the query asks for: a year range, or values of one kind (any of them)."""

    kind: str  # "year" or one of ATTRIBUTE_KINDS
    span: str  # the folded words of the query that asked for it
    years: tuple[int, int] | None = None  # first and last year, inclusive
    values: tuple[str, ...] = ()  # canonical values (catalogue spelling or the word list's key)
    also: tuple[tuple[str, str], ...] = ()  # (kind, value) alternatives: "French" is a country or a language

    def describe(self) -> str:
        if self.years is not None:
            first, last = self.years
            return f"year {first}" if first == last else f"years {first}-{last}"
        alternatives = [f"{self.kind} {' or '.join(self.values)}", *(f"{k} {v}" for k, v in self.also)]
        return " or ".join(alternatives)


@dataclass(frozen=True)
class ParsedQuery:
    constraints: tuple[Constraint, ...]
    rest: str  # the query without the words the constraints were read from (folded)

    def describe(self) -> list[str]:
        return [c.describe() for c in self.constraints]


@cache
def attribute_words() -> dict[str, Any]:
    """``attribute_words.yaml``, parsed once."""
    text = resources.files("semantic_ids").joinpath("attribute_words.yaml").read_text(encoding="utf-8")
    words: dict[str, Any] = yaml.safe_load(text)
    return words


def decade_words(decade: int, language: str) -> list[str]:
    """A decade's words in one language ("los noventa"), folded."""
    return [fold(w) for w in attribute_words()["decades"].get(decade, {}).get(language, [])]


def decade_forms(decade: int, language: str) -> list[str]:
    """Every way the word list writes a decade in ``language``: its digit forms and its words."""
    forms = attribute_words()["decade_forms"].get(language, [])
    digits = [f.format(short=f"{decade % 100:02d}", decade=decade) for f in forms]
    return digits + decade_words(decade, language)


def genre_words(value: str, language: str) -> list[str]:
    """A genre's words in one language ("comedie"), folded; none for a genre the list lacks."""
    return [fold(w) for w in attribute_words()["genres"].get(value, {}).get(language, [])]


def _fields(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """A catalogue row's fields, flat or in a bundle row's ``fields``."""
    inner = row.get("fields")
    return inner if isinstance(inner, Mapping) else row


def _values(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _year(value: Any) -> int | None:
    match = re.search(r"\d{4}", str(value)) if value is not None else None
    return int(match.group()) if match else None


def _decade_years(decade: int, part: str | None) -> tuple[int, int]:
    """The years of ``decade``, or of the part of it asked for (``DECADE_PARTS``)."""
    first, last = DECADE_PARTS.get(part or "", (0, 9))
    return decade + first, decade + last


def _short_decade(digits: str) -> int:
    """ "90" -> 1990, "10" -> 2010, "1990" -> 1990; "20" is the 1920s, the more common ask."""
    value = int(digits)
    if value >= 100:
        return value
    return 2000 + value if value < 20 else 1900 + value


class AttributeParser:
    """Reads constraints from queries, with the catalogue's own values as words too."""

    def __init__(self, fields: AttributeFields, catalogue_values: Mapping[str, Iterable[str]]) -> None:
        self.fields = fields
        words = attribute_words()
        # kind -> folded phrase -> canonical values; longest phrases are tried first
        phrases: dict[str, dict[str, set[str]]] = {kind: {} for kind in ATTRIBUTE_KINDS}
        for kind, table in (("genre", "genres"), ("rating", "ratings"), ("country", "countries"),
                            ("language", "languages")):  # fmt: skip
            if getattr(fields, kind) is None:
                continue
            for value, by_language in words[table].items():
                for language_words in by_language.values():
                    for phrase in language_words:
                        phrases[kind].setdefault(fold(phrase), set()).add(str(value))
            for value in catalogue_values.get(kind, ()):
                folded = fold(value)
                if folded and (kind != "rating" or len(folded) > 1):  # "r" alone is a letter, not a rating
                    phrases[kind].setdefault(folded, set()).add(value)
        self._phrases = phrases
        self._decade_words = {
            fold(w): int(decade)
            for decade, by_language in words["decades"].items()
            for language_words in by_language.values()
            for w in language_words
            if fields.year is not None
        }
        every = [(p, kind) for kind, table in phrases.items() for p in table]
        every += [(p, "decade") for p in self._decade_words]
        every.sort(key=lambda pair: -len(pair[0]))
        self._pattern = (
            # German decades take an -n after "den" ("aus den Neunzigern"); a decade word may follow the
            # part of it asked for ("the late nineties"), read as its "part" group.
            re.compile(
                rf"\b(?:(?P<part>{_PART_WORDS}) )?("
                + "|".join(re.escape(p) for p, _ in every)
                + r")(?:s|es|n)?\b"
            )
            if every
            else None
        )
        self._kind_of: dict[str, list[str]] = {}
        for phrase, kind in every:
            self._kind_of.setdefault(phrase, []).append(kind)

    def parse(self, query: str, keep: Sequence[str] = ()) -> ParsedQuery:
        """The query's constraints and the rest of its words; the folded phrases of ``keep`` (the names
        the query holds) are read as no attribute: "Frances McDormand" asks for no French film."""
        text = f" {fold(query)} "
        kept: dict[str, str] = {}
        for index, phrase in enumerate(keep):
            stand_in = "keptname" + "x" * (index + 1)  # one word of letters no pattern reads
            if f" {phrase} " in text:
                text, kept[stand_in] = text.replace(f" {phrase} ", f" {stand_in} "), phrase
        constraints: list[Constraint] = []
        if self.fields.year is not None:
            text = self._years(text, constraints)
        if self._pattern is not None:
            text = self._words(text, constraints)
        return ParsedQuery(tuple(constraints), " ".join(kept.get(word, word) for word in text.split()))

    def _years(self, text: str, out: list[Constraint]) -> str:
        for match in _BETWEEN.finditer(text):
            first, last = sorted((int(match.group(1)), int(match.group(2))))
            out.append(Constraint("year", match.group(0), years=(first, last)))
        text = _BETWEEN.sub(" ", text)
        for pattern in _DECADE_PATTERNS:
            for match in pattern.finditer(text):
                decade = _short_decade(match.group(2))
                if YEAR_RANGE[0] <= decade <= YEAR_RANGE[1]:
                    years = _decade_years(decade, match.group(1))
                    out.append(Constraint("year", match.group(0).strip(), years=years))
            text = pattern.sub(" ", text)
        for match in _OPEN_RANGE.finditer(text):
            word, year = match.group(1), int(match.group(2))
            if word in _EXACT_WORDS:
                years = (year, year)
            elif re.fullmatch(_BEFORE, word):
                years = (YEAR_RANGE[0], year - 1)
            else:
                years = (year, YEAR_RANGE[1])
            out.append(Constraint("year", match.group(0), years=years))
        text = _OPEN_RANGE.sub(" ", text)
        for match in _LONE_YEAR.finditer(text):
            year = int(match.group(1))
            out.append(Constraint("year", match.group(0), years=(year, year)))
        return _LONE_YEAR.sub(" ", text)

    def _words(self, text: str, out: list[Constraint]) -> str:
        assert self._pattern is not None
        seen: set[tuple[str, tuple[str, ...]]] = set()

        def take(match: re.Match[str]) -> str:
            phrase, part = match.group(2), match.group("part")
            kinds = self._kind_of[phrase]
            if "decade" in kinds:
                years = _decade_years(self._decade_words[phrase], part)
                out.append(Constraint("year", match.group(0).strip(), years=years))
                return " "
            kept = f" {part} " if part else " "  # "late" before a genre is no part of a decade
            span = match.group(0)[len(part) :].strip() if part else match.group(0)
            values = {kind: tuple(sorted(self._phrases[kind][phrase])) for kind in kinds}
            first, *others = kinds
            key = (first, values[first])
            if key not in seen:
                seen.add(key)
                also = tuple((kind, v) for kind in others for v in values[kind])
                out.append(Constraint(first, span, values=values[first], also=also))
            return kept

        return self._pattern.sub(take, text)


class RowAttributes:
    """Every catalogue row's attributes, held as arrays, so a constraint is a mask over all rows.

    Built from the rows when a bundle is written (or its catalogue changes) and kept in the bundle's
    lexical index (``save``/``load``), so a start-up does not walk a million rows again."""

    def __init__(
        self,
        fields: AttributeFields,
        years: np.ndarray,
        rows_of: Mapping[str, RowGroups],
        title_words: RowGroups,
        values: Mapping[str, list[str]],
    ) -> None:
        self.fields = fields
        self.years = years  # (rows,) int32, -1 where unknown
        self.size = len(years)
        # Which rows hold each value, per kind, as row numbers (not a mask of every row per value: a million
        # titles have ~10^5 distinct words, a megabyte apiece).
        self._rows = dict(rows_of)
        self._title_words = title_words
        self._values = {kind: list(found) for kind, found in values.items()}  # the catalogue's own words
        self.parser = AttributeParser(self.fields, self._values)

    @classmethod
    def build(cls, rows: Sequence[Mapping[str, Any]], fields: AttributeFields | None = None) -> RowAttributes:
        fields = fields or AttributeFields.detect(rows)
        flat = [_fields(row) for row in rows]
        year_key = fields.year
        years = np.asarray([(_year(f.get(year_key)) or -1) if year_key else -1 for f in flat], dtype=np.int32)
        rows_of: dict[str, RowGroups] = {}
        values: dict[str, list[str]] = {}
        folded: dict[str, str] = {}  # values recur across rows: each folded once
        for kind in ATTRIBUTE_KINDS:
            key = getattr(fields, kind)
            by_value: dict[str, list[int]] = {}
            if key is not None:
                for row, f in enumerate(flat):
                    for value in _values(f.get(key)):
                        if value not in folded:
                            folded[value] = fold(value)
                        found = by_value.setdefault(folded[value], [])
                        if not found or found[-1] != row:
                            found.append(row)
                values[kind] = sorted({v for f in flat for v in _values(f.get(key))})
            rows_of[kind] = RowGroups.of(by_value)
        title_words: dict[str, list[int]] = {}
        for row, item in enumerate(rows):
            for word in dict.fromkeys(fold(str(item.get("title", ""))).split()):
                title_words.setdefault(word, []).append(row)
        return cls(fields, years, rows_of, RowGroups.of(title_words), values)

    def save(self, folder: Path) -> None:
        np.save(folder / YEARS_FILE, self.years, allow_pickle=False)
        (folder / VALUES_FILE).write_text(
            json.dumps(self._values, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        for kind, groups in self._rows.items():
            groups.save(folder, f"attribute_{kind}")
        self._title_words.save(folder, TITLE_WORD_FILES)

    @classmethod
    def load(cls, folder: Path, fields: AttributeFields) -> RowAttributes:
        values = json.loads((folder / VALUES_FILE).read_text(encoding="utf-8"))
        rows_of = {kind: RowGroups.load(folder, f"attribute_{kind}") for kind in ATTRIBUTE_KINDS}
        years = np.load(folder / YEARS_FILE, allow_pickle=False)
        return cls(fields, years, rows_of, RowGroups.load(folder, TITLE_WORD_FILES), values)

    def parse(self, query: str, keep: Sequence[str] = ()) -> ParsedQuery:
        return self.parser.parse(query, keep)

    def mask(self, constraint: Constraint) -> np.ndarray:
        """(rows,) whether each row meets the constraint (its title naming the asked words counts)."""
        if constraint.years is not None:
            first, last = constraint.years
            met = (self.years >= first) & (self.years <= last)
        else:
            met = np.zeros(self.size, dtype=bool)
            for kind, value in [(constraint.kind, v) for v in constraint.values] + list(constraint.also):
                groups = self._rows.get(kind)
                found = None if groups is None else groups.get(fold(value))
                if found is not None:
                    met[found] = True
        in_title: np.ndarray = met | self._in_title(constraint.span)
        return in_title

    def satisfied(self, parsed: ParsedQuery) -> np.ndarray:
        """(rows,) the fraction of the query's constraints each row meets; ones when it has none."""
        if not parsed.constraints:
            return np.ones(self.size, dtype=np.float32)
        met = np.zeros(self.size, dtype=np.float32)
        for constraint in parsed.constraints:
            met += self.mask(constraint)
        return met / len(parsed.constraints)

    def _in_title(self, span: str) -> np.ndarray:
        words = span.split()
        found = np.ones(self.size, dtype=bool) if words else np.zeros(self.size, dtype=bool)
        for word in words:
            variants = (word, word.rstrip("s"), word + "s")
            hit = np.zeros(self.size, dtype=bool)
            for variant in variants:
                rows = self._title_words.get(variant)
                if rows is not None:
                    hit[rows] = True
            found &= hit
        return found
