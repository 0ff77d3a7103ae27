"""How the query templates phrase an item's fields: slot values with synonyms, the named templates
(seen in training, or held out for validation), and the light noise (lowercase, one typo) on top."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from training.data.items import CatalogueItem

CAST_POOL = 6  # as many cast names as the item text shows the baselines
MATCH_CAP = 200
DECADE_WORDS = {
    1910: "tens", 1920: "twenties", 1930: "thirties", 1940: "forties", 1950: "fifties", 1960: "sixties",
    1970: "seventies", 1980: "eighties", 1990: "nineties", 2000: "two-thousands", 2010: "twenty-tens",
}  # fmt: skip
GENRE_WORDS = {
    "Action": ["action"], "Adventure": ["adventure"], "Animation": ["animated", "animation", "cartoon"],
    "Biography": ["biopic", "biographical"], "Comedy": ["comedy", "funny"], "Crime": ["crime", "gangster"],
    "Documentary": ["documentary"], "Drama": ["drama", "dramatic"], "Family": ["family", "kids"],
    "Fantasy": ["fantasy"], "History": ["historical", "history"], "Horror": ["horror", "scary"],
    "Music": ["music"], "Musical": ["musical"], "Mystery": ["mystery", "whodunit"],
    "Romance": ["romance", "romantic", "love story"], "Sci-Fi": ["sci-fi", "science fiction", "scifi"],
    "Sport": ["sports"], "Thriller": ["thriller", "suspense"], "War": ["war"], "Western": ["western"],
}  # fmt: skip
COUNTRY_WORDS = {
    "United States": ["American", "US", "USA"], "United Kingdom": ["British", "UK", "English"],
    "France": ["French"], "Germany": ["German"], "Canada": ["Canadian"], "Australia": ["Australian"],
    "Japan": ["Japanese"], "Italy": ["Italian"], "Spain": ["Spanish"], "India": ["Indian"],
    "New Zealand": ["New Zealand", "Kiwi"], "Ireland": ["Irish"], "Mexico": ["Mexican"],
}  # fmt: skip


class MissingField(Exception):
    """The item lacks a field the template needs; the template is skipped for this item."""


def first_part(value: Any) -> str:
    return str(value).split(",")[0].strip()


class Slots:
    """Phrases for one item's fields; every call records the constraint it puts on matching items."""

    def __init__(self, item: CatalogueItem, rng: random.Random) -> None:
        self.item, self.fields, self.rng = item, item.fields, rng
        self.constraints: dict[str, Any] = {}

    def _need(self, key: str) -> Any:
        value = self.fields.get(key)
        if value in (None, "", []):
            raise MissingField(key)
        return value

    def title(self) -> str:
        self.constraints["title"] = self.item.title
        return self.item.title

    def director(self) -> str:
        name = first_part(self._need("director"))
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
        if decade in DECADE_WORDS:
            forms.append(DECADE_WORDS[decade])
        return self.rng.choice(forms)

    def genre(self) -> str:
        genre = self.rng.choice(list(self._need("genres")))
        self.constraints.setdefault("genres", []).append(genre)
        return self.rng.choice(GENRE_WORDS.get(genre, [str(genre).lower()]))

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
        return self.rng.choice(COUNTRY_WORDS.get(country, [country]))

    def language(self) -> str:
        language = first_part(self._need("language"))
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


def typo(text: str, rng: random.Random) -> str:
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


def add_noise(text: str, rng: random.Random, lowercase: float, typo_rate: float) -> str:
    text = re.sub(r"\b([Aa]) ([AEIOUaeiou])", r"\1n \2", text)  # "a action film" -> "an action film"
    if rng.random() < lowercase:
        text = text.lower()
    if rng.random() < typo_rate:
        text = typo(text, rng)
    return re.sub(r"\s+", " ", text).strip()
