"""Fresh training queries every epoch: new slot values, forms and noise on each pass over the items.

A fixed list of phrasings repeats the same strings on every pass; here epoch ``e`` draws its queries
from ``Random(f"{seed}-{e}")``, so passes differ while a run stays reproducible. A query names one to
three facets of a film in random forms: a title (lower-cased, without its article, one side of a
colon, truncated), a director by full name or surname, any listed cast member (actors who appear in
several films of the catalogue more often: those are the names people type), any listed country or
language, a year or decade in figures or words, genre synonyms. Openers and word order vary; typos
are added at random. The held-out validation templates of ``phrasing.TEMPLATES`` are never used.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from training.data.items import CatalogueItem
from training.llm.examples import example_target, query_example
from training.llm.phrasing import COUNTRY_WORDS, DECADE_WORDS, GENRE_WORDS, typo

_ARTICLES = ("the ", "a ", "an ")
_OPENERS = ("", "", "", "", "a ", "the ", "movie ", "film ", "movies: ", "find ", "show me ", "any ",
            "i'd like ", "search ", "suggest ", "i want ", "need ", "give me ")  # fmt: skip
# Facet weights: names bind entities to IDs, so they come up most.
_FACETS = {"title": 3.0, "director": 1.5, "cast": 2.5, "year": 0.8, "decade": 0.8, "genre": 1.2,
           "country": 0.6, "language": 0.6, "rating": 0.3}  # fmt: skip
_NAMES = ("title", "director", "cast")
# Cast members are drawn with weight (films of theirs in the catalogue) ** CAST_WEIGHT_POWER: the
# names people type are those of actors in many films; a cast facet names 2-3 of them at MULTI_CAST_RATE.
CAST_WEIGHT_POWER = 1.5
MULTI_CAST_RATE = 0.0
TITLE_TYPO_RATE = 0.35
_ORDER = ("rating", "decade", "country", "genre", "title", "director", "cast", "language", "year")


def _names(value: Any) -> list[str]:
    parts = value if isinstance(value, list) else str(value or "").split(",")
    return [str(part).strip() for part in parts if str(part).strip()]


_LINKING_WORDS = frozenset(
    ["the", "a", "an", "of", "and", "in", "on", "at", "to", "for", "with", "from", "by", "part"]
)


def _title_keywords(title: str, rng: random.Random) -> str:
    """Some of the title's content words in order, as people search: "harry potter azkaban"."""
    words = [w for w in re.sub(r"[^\w\s']", " ", title).split() if w.lower() not in _LINKING_WORDS]
    if len(words) < 3:
        return title
    keep = sorted(rng.sample(range(1, len(words)), rng.randint(1, min(3, len(words) - 1))))
    return " ".join(words[i] for i in [0, *keep])


def title_form(title: str, rng: random.Random) -> str:
    """The title as people type it: whole, without its article, one side of a colon, its first words,
    or a few of its content words."""
    draw = rng.random()
    if draw < 0.15 and title.lower().startswith(_ARTICLES):
        title = title.split(" ", 1)[1]
    elif draw < 0.35 and re.search(r"[:–]| - ", title):
        title = rng.choice([p for p in re.split(r"\s*[:–]\s*|\s+-\s+", title) if p.strip()] or [title])
    elif draw < 0.45 and len(title.split()) >= 3:
        words = title.split()
        title = " ".join(words[: rng.randint(2, len(words) - 1)])
    elif draw < 0.55:
        title = _title_keywords(title, rng)
    if rng.random() < 0.3:
        title = re.sub(r"[^\w\s']", " ", title)
    return title


class _Facets:
    """One film's facets, each rendered in a random form (None when the film lacks the field)."""

    def __init__(self, item: CatalogueItem, rng: random.Random, cast_counts: Counter[str]) -> None:
        self.item, self.fields, self.rng, self.cast_counts = item, item.fields, rng, cast_counts

    def _form(self, forms: Sequence[str], value: Any) -> str:
        return self.rng.choice(forms).format(x=value)

    def title(self) -> str | None:
        return title_form(self.item.title, self.rng)

    def director(self) -> str | None:
        names = _names(self.fields.get("director"))
        if not names:
            return None
        name = self.rng.choice(names)
        if self.rng.random() < 0.35 and " " in name:
            name = name.split()[-1]  # "a Nolan film"
        return self._form(("{x}", "{x}", "by {x}", "directed by {x}", "{x}'s", "a {x} film"), name)

    def cast(self) -> str | None:
        names = _names(self.fields.get("cast"))
        if not names:
            return None
        weights = [self.cast_counts[n] ** CAST_WEIGHT_POWER for n in names]
        if len(names) > 1 and self.rng.random() < MULTI_CAST_RATE:
            count = min(len(names), self.rng.choice((2, 2, 3)))
            chosen = list(dict.fromkeys(self.rng.choices(names, weights=weights, k=count * 2)))[:count]
            joined = self.rng.choice((" and ", ", ", " ")).join(chosen)
            return self._form(("{x}", "with {x}", "starring {x}", "{x} together"), joined)
        name = self.rng.choices(names, weights=weights)[0]
        return self._form(("{x}", "{x}", "with {x}", "starring {x}", "{x} movie", "{x} stars in"), name)

    def year(self) -> str | None:
        year = self.fields.get("year")
        return self._form(("{x}", "{x}", "from {x}", "released in {x}", "({x})"), year) if year else None

    def decade(self) -> str | None:
        if not self.fields.get("year"):
            return None
        decade = int(self.fields["year"]) // 10 * 10
        forms = [f"{decade}s", f"{decade % 100:02d}s", f"'{decade % 100:02d}s"]
        if decade in DECADE_WORDS:
            forms += [DECADE_WORDS[decade], f"the {DECADE_WORDS[decade]}"]
        return self._form(("{x}", "{x}", "from the {x}"), self.rng.choice(forms))

    def genre(self) -> str | None:
        genres = _names(self.fields.get("genres"))
        if not genres:
            return None
        genre = self.rng.choice(genres)
        return self.rng.choice(GENRE_WORDS.get(genre, [genre.lower()]))

    def country(self) -> str | None:
        countries = _names(self.fields.get("country"))
        if not countries:
            return None
        country = self.rng.choice(countries)
        return self.rng.choice([*COUNTRY_WORDS.get(country, []), country])

    def language(self) -> str | None:
        languages = _names(self.fields.get("language"))
        if not languages:
            return None
        forms = ("in {x}", "{x}-language", "{x} language", "{x} speaking", "spoken in {x}")
        return self._form(forms, self.rng.choice(languages))

    def rating(self) -> str | None:
        rating = self.fields.get("mpaa_rating")
        return self._form(("rated {x}", "{x}", "{x}-rated"), rating) if rating else None


def _choose_facets(rng: random.Random) -> list[str]:
    count = rng.choices([1, 2, 3], weights=[0.45, 0.35, 0.2])[0]
    if count == 1:  # one vague facet fits hundreds of films: a lone facet is mostly a name
        return [rng.choice(_NAMES) if rng.random() < 0.9 else rng.choice(list(_FACETS))]
    others = [f for f in _FACETS if f != "title"]
    chosen = ["title"] if rng.random() < 0.2 else []
    while len(chosen) < count:
        facet = rng.choices(others, weights=[_FACETS[f] for f in others])[0]
        if facet not in chosen:
            chosen.append(facet)
    return sorted(chosen, key=_ORDER.index) if rng.random() < 0.7 else rng.sample(chosen, len(chosen))


def compose_query(item: CatalogueItem, rng: random.Random, cast_counts: Counter[str]) -> str:
    facets = _Facets(item, rng, cast_counts)
    names = _choose_facets(rng)
    parts = [text for text in (getattr(facets, name)() for name in names) if text]
    text = rng.choice(_OPENERS) + " ".join(parts or [item.title])
    if rng.random() < 0.5:
        text = text.lower()
    # A title typed alone is where typos hurt most (nothing else in the query to go by).
    if rng.random() < (TITLE_TYPO_RATE if names == ["title"] else 0.2):
        text = typo(text, rng)
    return re.sub(r"\s+", " ", text).strip()


class QueryGenerator:
    """``epoch(e)``: ``per_item`` fresh query examples for every item, shuffled; seeded by (seed, e)."""

    def __init__(self, items: Sequence[CatalogueItem], per_item: int, seed: int) -> None:
        self.items, self.per_item, self.seed = list(items), per_item, seed
        self.cast_counts: Counter[str] = Counter(n for i in items for n in _names(i.fields.get("cast")))

    def epoch(self, epoch: int) -> list[dict[str, Any]]:
        rng = random.Random(f"{self.seed}-{epoch}")
        examples = []
        for item in self.items:
            target = example_target(item)
            for _ in range(self.per_item):
                query = compose_query(item, rng, self.cast_counts)
                examples.append(query_example("train", "generated", item.item_id, query, target))
        rng.shuffle(examples)
        return examples
