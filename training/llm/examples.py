"""Seeded fine-tuning examples: free-text query -> semantic ID, plus semantic ID -> attribute.

Queries are built from an item's own fields through named phrasing templates: the title alone or
with a year, and director, year or decade, genre, cast, country, language and MPAA rating in
combinations, short and long. Slot values vary too (genre synonyms, decades as "nineties", "90s",
"1990s"), and some queries are lowercased or get one light typo. Whole templates are held out for
validation, so validation measures generalisation to wording the model never saw.

Relevance: the target is the item the query was generated from, and evaluation counts that source
item as the relevant one. Many attribute queries ("a nineties drama by Woody Allen") fit several
items; each validation example also lists ``matching_item_ids``, every item whose fields satisfy all
the query's attribute constraints (capped), for a second, lenient "any matching item" metric.

Cast names are drawn from the first six cast entries, the ones ``render_item_text`` shows to the
dense and BM25 baselines, so all three systems are asked about facts they could all see.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semantic_ids.decoding import build_prompt
from semantic_ids.ids import SEM_END, SemanticId

CAST_POOL = 6  # as many cast names as the item text shows the baselines
MATCH_CAP = 200
_DECADE_WORDS = {
    1910: "tens", 1920: "twenties", 1930: "thirties", 1940: "forties", 1950: "fifties", 1960: "sixties",
    1970: "seventies", 1980: "eighties", 1990: "nineties", 2000: "two-thousands", 2010: "twenty-tens",
}  # fmt: skip
_GENRE_WORDS = {
    "Action": ["action"], "Adventure": ["adventure"], "Animation": ["animated", "animation", "cartoon"],
    "Biography": ["biopic", "biographical"], "Comedy": ["comedy", "funny"], "Crime": ["crime", "gangster"],
    "Documentary": ["documentary"], "Drama": ["drama", "dramatic"], "Family": ["family", "kids"],
    "Fantasy": ["fantasy"], "History": ["historical", "history"], "Horror": ["horror", "scary"],
    "Music": ["music"], "Musical": ["musical"], "Mystery": ["mystery", "whodunit"],
    "Romance": ["romance", "romantic", "love story"], "Sci-Fi": ["sci-fi", "science fiction", "scifi"],
    "Sport": ["sports"], "Thriller": ["thriller", "suspense"], "War": ["war"], "Western": ["western"],
}  # fmt: skip
_COUNTRY_WORDS = {
    "United States": ["American", "US", "USA"], "United Kingdom": ["British", "UK", "English"],
    "France": ["French"], "Germany": ["German"], "Canada": ["Canadian"], "Australia": ["Australian"],
    "Japan": ["Japanese"], "Italy": ["Italian"], "Spain": ["Spanish"], "India": ["Indian"],
    "New Zealand": ["New Zealand", "Kiwi"], "Ireland": ["Irish"], "Mexico": ["Mexican"],
}  # fmt: skip


class MissingField(Exception):
    """The item lacks a field the template needs; the template is skipped for this item."""


def _first(value: Any) -> str:
    return str(value).split(",")[0].strip()


class Slots:
    """Phrases for one item's fields; every call records the constraint it puts on matching items."""

    def __init__(self, item: Mapping[str, Any], rng: random.Random) -> None:
        self.item, self.fields, self.rng = item, item.get("fields", {}), rng
        self.constraints: dict[str, Any] = {}

    def _need(self, key: str) -> Any:
        value = self.fields.get(key)
        if value in (None, "", []):
            raise MissingField(key)
        return value

    def title(self) -> str:
        self.constraints["title"] = self.item["title"]
        return str(self.item["title"])

    def director(self) -> str:
        name = _first(self._need("director"))
        self.constraints["director"] = name
        return name

    def year(self) -> str:
        year = int(self._need("year"))
        self.constraints["year"] = year
        return str(year)

    def decade(self) -> str:
        year = int(self._need("year"))
        decade = year - year % 10
        self.constraints["decade"] = decade
        forms = [f"{decade}s", f"{decade % 100:02d}s", f"'{decade % 100:02d}s"]
        if decade in _DECADE_WORDS:
            forms.append(_DECADE_WORDS[decade])
        return self.rng.choice(forms)

    def genre(self) -> str:
        genre = self.rng.choice(list(self._need("genres")))
        self.constraints.setdefault("genres", []).append(genre)
        return self.rng.choice(_GENRE_WORDS.get(genre, [str(genre).lower()]))

    def cast(self) -> str:
        pool = [
            name
            for name in list(self._need("cast"))[:CAST_POOL]
            if name not in self.constraints.get("cast", [])
        ]
        if not pool:
            raise MissingField("cast")
        name = self.rng.choice(pool)
        self.constraints.setdefault("cast", []).append(name)
        return str(name)

    def country(self) -> str:
        country = self.rng.choice([c.strip() for c in str(self._need("country")).split(",")])
        self.constraints["country"] = country
        return self.rng.choice(_COUNTRY_WORDS.get(country, [country]))

    def language(self) -> str:
        language = _first(self._need("language"))
        self.constraints["language"] = language
        return language

    def rating(self) -> str:
        rating = str(self._need("mpaa_rating"))
        self.constraints["mpaa_rating"] = rating
        return self.rng.choice([rating, f"rated {rating}", f"{rating}-rated"])


@dataclass(frozen=True)
class Template:
    name: str
    held_out: bool
    render: Callable[[Slots], str]
    weight: float = 1.0


def _t(name: str, render: Callable[[Slots], str], weight: float = 1.0, held_out: bool = False) -> Template:
    return Template(name, held_out, render, weight)


# fmt: off
TEMPLATES: tuple[Template, ...] = (
    # Seen in training.
    _t("title", lambda s: s.title(), 3.0),
    _t("title_year", lambda s: f"{s.title()} ({s.year()})", 1.5),
    _t("title_movie", lambda s: f"the movie {s.title()}", 1.5),
    _t("title_director", lambda s: f"{s.title()} by {s.director()}"),
    _t("title_cast", lambda s: f"{s.title()} with {s.cast()}"),
    _t("director_genre", lambda s: f"{s.genre()} by {s.director()}"),
    _t("director_year", lambda s: f"{s.director()} film from {s.year()}"),
    _t("director_decade_genre", lambda s: f"{s.decade()} {s.genre()} directed by {s.director()}"),
    _t("director_cast", lambda s: f"{s.director()} movie starring {s.cast()}"),
    _t("cast_genre", lambda s: f"{s.genre()} movie with {s.cast()}"),
    _t("cast_year", lambda s: f"{s.cast()} in {s.year()}"),
    _t("cast_cast", lambda s: f"{s.cast()} and {s.cast()}"),
    _t("cast_decade_genre", lambda s: f"{s.decade()} {s.genre()} film starring {s.cast()}"),
    _t("genre_country_decade", lambda s: f"{s.country()} {s.genre()} from the {s.decade()}", 0.5),
    _t("genre_language", lambda s: f"{s.genre()} film in {s.language()}", 0.5),
    _t("rating_genre_year", lambda s: f"{s.rating()} {s.genre()} from {s.year()}", 0.5),
    _t("long_director",
       lambda s: f"I want to watch a {s.genre()} film directed by {s.director()}, released in {s.year()}"),
    _t("long_cast",
       lambda s: f"can you find me a {s.genre()} movie from the {s.decade()} where {s.cast()} plays"),
    # Held out: validation only, wording never seen in training.
    _t("v_title_looking", lambda s: f"looking for {s.title()}", held_out=True),
    _t("v_title_watch", lambda s: f"watch {s.title()} tonight", held_out=True),
    _t("v_title_decade", lambda s: f"{s.title()}, the {s.decade()} one", held_out=True),
    _t("v_director_genre", lambda s: f"a {s.director()} {s.genre()}", held_out=True),
    _t("v_director_decade", lambda s: f"something {s.director()} made in the {s.decade()}", held_out=True),
    _t("v_cast_director", lambda s: f"{s.cast()} in a film by {s.director()}", held_out=True),
    _t("v_cast_year_genre",
       lambda s: f"recommend a {s.year()} {s.genre()} featuring {s.cast()}", held_out=True),
    _t("v_two_cast", lambda s: f"films where {s.cast()} acts alongside {s.cast()}", held_out=True),
    _t("v_director_year_q", lambda s: f"what did {s.director()} direct in {s.year()}?", held_out=True),
    _t("v_country_genre_cast", lambda s: f"{s.country()} {s.genre()} starring {s.cast()}", held_out=True),
)
# fmt: on


def _typo(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not candidates:
        return text
    index = rng.choice(candidates)
    word, at = words[index], rng.randrange(1, len(words[index]) - 1)
    kind = rng.choice(["drop", "swap", "double"])
    if kind == "drop":
        word = word[:at] + word[at + 1 :]
    elif kind == "swap":
        word = word[: at - 1] + word[at] + word[at - 1] + word[at + 1 :]
    else:
        word = word[:at] + word[at] + word[at:]
    words[index] = word
    return " ".join(words)


def _noisy(text: str, rng: random.Random, lowercase: float, typo: float) -> str:
    text = re.sub(r"\b([Aa]) ([AEIOUaeiou])", r"\1n \2", text)  # "a action film" -> "an action film"
    if rng.random() < lowercase:
        text = text.lower()
    if rng.random() < typo:
        text = _typo(text, rng)
    return re.sub(r"\s+", " ", text).strip()


@dataclass(frozen=True)
class ExampleConfig:
    seed: int = 0
    train_queries_per_item: int = 12
    valid_queries_per_item: int = 1
    attribute_examples_per_item: int = 2
    index_examples_per_item: int = 0  # the item's own profile text -> its ID (DSI-style "indexing")
    lowercase_rate: float = 0.3
    typo_rate: float = 0.1


def _query_examples(
    item: Mapping[str, Any], pool: Sequence[Template], count: int, rng: random.Random, config: ExampleConfig
) -> list[tuple[Template, str, dict[str, Any]]]:
    """Up to ``count`` distinct queries, templates drawn by weight (so titles come up most often)."""
    out: list[tuple[Template, str, dict[str, Any]]] = []
    usable, seen = list(pool), set()
    for _ in range(count * 4):  # bounded: an item with few fields cannot fill ``count`` distinct queries
        if len(out) >= count or not usable:
            break
        template = rng.choices(usable, weights=[t.weight for t in usable])[0]
        slots = Slots(item, rng)
        try:
            text = _noisy(template.render(slots), rng, config.lowercase_rate, config.typo_rate)
        except MissingField:
            usable.remove(template)
            continue
        if text.lower() not in seen:
            seen.add(text.lower())
            out.append((template, text, slots.constraints))
    return out


def _target(item: Mapping[str, Any]) -> str:
    return "".join(SemanticId(tuple(int(c) for c in item["semantic_id"])).code_tokens()) + SEM_END


_ATTRIBUTES = ("title", "director", "year", "genres")


def index_text(item: Mapping[str, Any]) -> str:
    """A compact profile of the item: every fact the query templates ask about, in one line."""
    fields = item.get("fields", {})
    parts = [f"{item['title']}" + (f" ({fields['year']})" if "year" in fields else "")]
    if fields.get("genres"):
        parts.append(", ".join(fields["genres"][:3]))
    if "director" in fields:
        parts.append(f"directed by {_first(fields['director'])}")
    if fields.get("cast"):
        parts.append("starring " + ", ".join(list(fields["cast"])[:3]))
    origin = [_first(fields[key]) for key in ("country", "language") if key in fields]
    if origin:
        parts.append(" ".join(origin))
    return ". ".join(parts)


def attribute_example(item: Mapping[str, Any], attribute: str) -> tuple[str, str] | None:
    """(prompt, answer): "<ID tokens> director:" -> " Sam Mendes"; None when the item lacks it."""
    value = item["title"] if attribute == "title" else item.get("fields", {}).get(attribute)
    if value in (None, "", []):
        return None
    answer = ", ".join(value[:3]) if isinstance(value, list) else str(value)
    sid = SemanticId(tuple(int(c) for c in item["semantic_id"]))
    return f"{sid.tokens} {attribute}:", f" {answer}"


class _MatchIndex:
    """Which items satisfy a query's constraints (inverted index per constraint kind)."""

    def __init__(self, items: Sequence[Mapping[str, Any]]) -> None:
        self.index: dict[tuple[str, Any], set[str]] = defaultdict(set)
        for item in items:
            item_id, fields = str(item["item_id"]), item.get("fields", {})
            keys: list[tuple[str, Any]] = [("title", str(item["title"]).lower())]
            if "director" in fields:
                keys.append(("director", _first(fields["director"])))
            if "year" in fields:
                keys += [("year", int(fields["year"])), ("decade", int(fields["year"]) // 10 * 10)]
            keys += [("genres", g) for g in fields.get("genres", [])]
            keys += [("cast", c) for c in list(fields.get("cast", []))]
            keys += [("country", c.strip()) for c in str(fields.get("country", "")).split(",") if c.strip()]
            if "language" in fields:
                keys.append(("language", _first(fields["language"])))
            if "mpaa_rating" in fields:
                keys.append(("mpaa_rating", str(fields["mpaa_rating"])))
            for key in keys:
                self.index[key].add(item_id)

    def matching(self, constraints: Mapping[str, Any]) -> list[str]:
        sets = []
        for kind, value in constraints.items():
            values = value if isinstance(value, list) else [value]
            for one in values:
                sets.append(self.index.get((kind, one.lower() if kind == "title" else one), set()))
        return sorted(set.intersection(*sets))[:MATCH_CAP] if sets else []


def build_examples(items: Sequence[Mapping[str, Any]], config: ExampleConfig) -> list[dict[str, Any]]:
    """All examples for ``items`` (items_with_ids rows), deterministic for a given config."""
    rng = random.Random(config.seed)
    train_pool = [t for t in TEMPLATES if not t.held_out]
    valid_pool = [t for t in TEMPLATES if t.held_out]
    matcher = _MatchIndex(items)
    examples: list[dict[str, Any]] = []
    for item in items:
        target, item_id = _target(item), str(item["item_id"])
        for split, pool, count in (
            ("train", train_pool, config.train_queries_per_item),
            ("valid", valid_pool, config.valid_queries_per_item),
        ):
            for template, query, constraints in _query_examples(item, pool, count, rng, config):
                example: dict[str, Any] = {
                    "split": split,
                    "kind": "query",
                    "template": template.name,
                    "item_id": item_id,
                    "query": query,
                    "prompt": build_prompt(query),
                    "target": target,
                }
                if split == "valid":
                    example["matching_item_ids"] = matcher.matching(constraints) or [item_id]
                examples.append(example)
        for _ in range(config.index_examples_per_item):
            query = index_text(item)
            examples.append(
                {
                    "split": "train",
                    "kind": "query",
                    "template": "index",
                    "item_id": item_id,
                    "query": query,
                    "prompt": build_prompt(query),
                    "target": target,
                }
            )
        attributes = rng.sample(_ATTRIBUTES, k=min(config.attribute_examples_per_item, len(_ATTRIBUTES)))
        for attribute in attributes:
            pair = attribute_example(item, attribute)
            if pair is not None:
                examples.append(
                    {
                        "split": "train",
                        "kind": "attribute",
                        "template": f"attr_{attribute}",
                        "item_id": item_id,
                        "prompt": pair[0],
                        "target": pair[1],
                    }
                )
    rng.shuffle(examples)
    return examples


def write_examples(examples: Iterable[Mapping[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    with tmp.open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(json.dumps(example, ensure_ascii=False) + "\n")
    tmp.replace(path)


def read_examples(path: Path, split: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [r for r in rows if (split is None or r["split"] == split) and (kind is None or r["kind"] == kind)]
