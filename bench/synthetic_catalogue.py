"""A synthetic catalogue of N film-like items, to measure the pipeline and the service past 17,470 films.

    .venv/bin/python -m bench.synthetic_catalogue --items 1000000 --out /tmp/syn1m.jsonl [--seed 0]

Writes flat JSONL (one ``{"item_id", "title", ...fields}`` object a line, the import format that
``training.data.catalogue.read_catalogue`` reads) atomically, and prints one line: items, seconds, bytes.
The fields and their types are those ``load_films`` gives, so item text, the lexical index and query
attribute parsing treat the rows like films. Everything is drawn from the films (``load_films``), with
``random.Random(seed)``: the same seed gives the same rows.

**Fields.** Each group of fields that belong together is copied from a real film drawn at random, a
different film for each group: (year, MPAA rating, runtime) so that ratings only appear after 1968;
the genre list (the films' genre combinations); (language, country), so French goes with France; the
production companies; (awards, Oscars won); (Tomatometer, review count, box office). A field a drawn
film lacks is left out, so each field is missing as often as in the films. No consensus: it is prose
about one real film, naming it (and this movies.db has none).

**People.** The number of directors, writers and actors is copied from one random film; each credit is a
person drawn in proportion to their credits in the films (directors from directors, and so on). Drawn
as is, a catalogue of 10^6 items would credit each of the films' 53,000 actors about 57 times as often
as the films do. So the population of people grows with the catalogue: ``copies = round(N / 17,470)``
(at least 1) copies of the films' people, copy 0 with their real names, each other copy under made-up
names (a real first name and a real surname, picked by a fixed hash of seed, copy and person); a credit
picks a person by frequency, then a copy uniformly. Every person then has about as many credits as the
films give them, prolific ones stay prolific, and the count of distinct people grows linearly with N.
Up to ~26,000 items there is one copy: only real names. One person keeps one made-up name across roles
(a writer-director stays one). A cast is listed most prominent first, as ``load_films`` orders it.

**Titles.** A random real title is the shape: its content words (not articles, prepositions, pronouns,
numbers, acronyms or roman numerals) are each replaced by a word from the films' titles drawn by
frequency, keeping the punctuation ("The Little Mermaid II: Return to the Sea" -> "The Dead Wolves II:
Night to the Garden"). Titles are unique (case-insensitively) within the catalogue and differ from every
real film's; a title already taken is drawn again from a new shape, up to ``TITLE_TRIES`` times, and
only then numbered like a sequel ("... 2"). Memory stays flat apart from the set of titles taken.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from random import Random
from typing import Any

from training.data.catalogue import CatalogueError, load_films
from training.data.items import CatalogueItem

TITLE_TRIES = 8
# Titles the catalogue reader takes for a missing value (``training.data.catalogue``): never drawn.
NOT_TITLES = frozenset({"", "n/a", "na", "none", "null"})
# Field groups copied together from one random film (see the module docstring), in load_films' order.
ERA = ("year", "mpaa_rating", "runtime_minutes")
ORIGIN = ("language", "country")
AWARDS = ("awards", "oscars_won")
RECEPTION = ("tomato_meter", "tomato_reviews", "box_office")

# Title words kept as they are: function words in the films' languages, so shapes keep their grammar.
_KEPT_WORDS = frozenset({
    "a", "an", "the", "of", "and", "or", "in", "on", "at", "to", "for", "from", "with", "without", "by",
    "into", "about", "as", "is", "it", "its", "i", "me", "my", "you", "your", "we", "our", "us", "he",
    "his", "she", "her", "they", "their", "them", "this", "that", "these", "those", "be", "are", "was",
    "were", "not", "no", "all", "out", "up", "down", "off", "over", "under", "after", "before", "what",
    "who", "how", "why", "when", "where", "there", "here", "so", "but", "if", "vs", "mr", "mrs", "ms",
    "dr", "st", "de", "la", "le", "les", "el", "los", "las", "du", "des", "un", "une", "et", "en", "del",
    "di", "da", "il", "der", "die", "das", "und", "von",
})  # fmt: skip
_TOKEN = re.compile(r"(\W*)([^\W\d_][\w'’-]*)(\W*)")  # leading punctuation, a word, trailing punctuation
_NAME_SUFFIXES = frozenset({"Jr.", "Sr.", "II", "III", "IV"})
_MASK = (1 << 64) - 1


@dataclass(frozen=True)
class FilmPools:
    """What the generator draws from, taken once from the films."""

    films: list[dict[str, Any]]  # flat films, the donors of field groups
    shapes: list[tuple[tuple[str, bool], ...]]  # per title with a content word: (text, is_slot) parts
    title_words: list[str]  # content words of titles, repeated as often as they occur
    real_titles: frozenset[str]  # casefolded
    names: list[str]  # every person; a credit is an index into this list
    cast_films: list[int]  # per person: films listing them in a cast, to order a cast by prominence
    directors: list[int]  # one entry per credit, so a uniform draw is a draw by frequency
    writers: list[int]
    cast: list[int]
    crews: list[tuple[int, int, int]]  # per film: directors, writers, actors
    first_names: list[str]  # one entry per person, so common first names stay common
    surnames: list[str]


def _split_names(value: Any) -> list[str]:
    """load_films keeps directors and writers as one "A, B" string and a cast as a list."""
    if value is None:
        return []
    parts = value if isinstance(value, list) else str(value).split(",")
    return [part.strip() for part in parts if part.strip()]


def _title_shape(title: str) -> tuple[tuple[str, bool], ...]:
    parts: list[tuple[str, bool]] = []
    for token in title.split():
        match = _TOKEN.fullmatch(token)
        word = match.group(2) if match else ""
        if match and len(word) > 1 and not word.isupper() and word.lower() not in _KEPT_WORDS:
            lead, _, trail = match.groups()
            if lead:
                parts.append((lead, False))
            parts.append((word, True))  # the original word only tells its case
            if trail:
                parts.append((trail, False))
        else:
            parts.append((token, False))
        parts.append((" ", False))
    return tuple(parts[:-1])


def film_pools(films: Iterable[CatalogueItem]) -> FilmPools:
    flat = [film.to_flat() for film in films]
    shapes = [_title_shape(row["title"]) for row in flat]
    if not any(slot for shape in shapes for _, slot in shape):
        raise ValueError("no film title with a word to replace: nothing to make titles from")
    index: dict[str, int] = {}
    credits: dict[str, list[int]] = {"director": [], "writer": [], "cast": []}
    crews: list[tuple[int, int, int]] = []
    for row in flat:
        sizes = []
        for role, people in credits.items():
            names = _split_names(row.get(role))
            people.extend(index.setdefault(name, len(index)) for name in names)
            sizes.append(len(names))
        crews.append((sizes[0], sizes[1], sizes[2]))
    names = list(index)
    in_casts = Counter(credits["cast"])
    first_names, surnames = [], []
    for name in names:
        words = [word for word in name.split() if word not in _NAME_SUFFIXES]
        if len(words) >= 2 and not words[0].endswith("."):  # "J. D. Evermore" gives no first name
            first_names.append(words[0])
            surnames.append(words[-1])
    return FilmPools(
        films=flat,
        shapes=[shape for shape in shapes if any(slot for _, slot in shape)],
        title_words=[text for shape in shapes for text, slot in shape if slot],
        real_titles=frozenset(row["title"].casefold() for row in flat),
        names=names,
        cast_films=[in_casts[person] for person in range(len(names))],
        directors=credits["director"],
        writers=credits["writer"],
        cast=credits["cast"],
        crews=crews,
        first_names=first_names or names,
        surnames=surnames or names,
    )


def _mix(value: int) -> int:
    """splitmix64's finaliser: a fixed, well-spread hash (``hash()`` of a str changes per process)."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


def _person_name(pools: FilmPools, person: int, copy: int, seed: int) -> str:
    if copy == 0:
        return pools.names[person]
    code = _mix(((seed * 1_000_003 + copy) << 24) + person)
    first = pools.first_names[code % len(pools.first_names)]
    return f"{first} {pools.surnames[(code >> 32) % len(pools.surnames)]}"


def _people(
    rng: Random, pools: FilmPools, credits: list[int], size: int, copies: int, seed: int
) -> list[tuple[str, int]]:
    """``size`` distinct (name, the person's films as cast) pairs; fewer only in a pool too small to
    give that many people in four rounds of draws."""
    chosen: dict[str, int] = {}
    for _ in range(4):  # later rounds replace people drawn twice
        for person in rng.choices(credits, k=size - len(chosen)):
            copy = int(rng.random() * copies)  # one C call; randrange costs a Python frame per credit
            chosen.setdefault(_person_name(pools, person, copy, seed), pools.cast_films[person])
        if len(chosen) == size:
            break
    return list(chosen.items())


def _title(rng: Random, pools: FilmPools, taken: set[str]) -> str:
    title = ""
    for _ in range(TITLE_TRIES):
        parts = []
        for text, slot in rng.choice(pools.shapes):
            if slot:
                word = rng.choice(pools.title_words)
                text = (word[0].upper() if text[0].isupper() else word[0].lower()) + word[1:]
            parts.append(text)
        title = "".join(parts)
        if title.casefold() not in taken:
            taken.add(title.casefold())
            return title
    number = 2
    while f"{title} {number}".casefold() in taken:
        number += 1
    taken.add(f"{title} {number}".casefold())
    return f"{title} {number}"


def _copy_fields(row: dict[str, Any], donor: dict[str, Any], keys: Sequence[str]) -> None:
    for key in keys:
        if key in donor:
            value = donor[key]
            row[key] = list(value) if isinstance(value, list) else value


def synthetic_items(count: int, seed: int = 0, pools: FilmPools | None = None) -> Iterator[dict[str, Any]]:
    """``count`` flat film-like items, made one at a time (see the module docstring).

    ``pools`` defaults to those of ``load_films()``. The rows depend on ``count`` (it sets how many
    copies of the films' people there are), so a short catalogue is not a prefix of a long one.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if pools is None:
        pools = film_pools(load_films())
    rng = Random(seed)
    copies = max(1, round(count / len(pools.films)))
    taken = set(pools.real_titles) | NOT_TITLES
    for number in range(1, count + 1):
        row: dict[str, Any] = {"item_id": f"syn-{number:07d}", "title": _title(rng, pools, taken)}
        _copy_fields(row, rng.choice(pools.films), ERA)
        _copy_fields(row, rng.choice(pools.films), ("genres",))
        directors, writers, actors = rng.choice(pools.crews)
        if directors:
            people = _people(rng, pools, pools.directors, directors, copies, seed)
            row["director"] = ", ".join(name for name, _ in people)
        if writers:
            people = _people(rng, pools, pools.writers, writers, copies, seed)
            row["writer"] = ", ".join(name for name, _ in people)
        if actors:
            people = _people(rng, pools, pools.cast, actors, copies, seed)
            people.sort(key=lambda pair: -pair[1])  # most films first, ties as drawn, like load_films
            row["cast"] = [name for name, _ in people]
        _copy_fields(row, rng.choice(pools.films), ORIGIN)
        _copy_fields(row, rng.choice(pools.films), ("production",))
        _copy_fields(row, rng.choice(pools.films), AWARDS)
        _copy_fields(row, rng.choice(pools.films), RECEPTION)
        yield row


def write_catalogue(rows: Iterable[dict[str, Any]], out: Path) -> tuple[int, int]:
    """Write JSONL to a temporary file beside ``out``, then rename it: a reader never sees half a file.
    Returns (rows, bytes)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    written = 0
    try:
        with temporary.open("w", encoding="utf-8") as stream:
            for row in rows:
                stream.write(json.dumps(row, ensure_ascii=False) + "\n")
                written += 1
        os.replace(temporary, out)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return written, out.stat().st_size


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--items", type=_positive, required=True, help="how many items to make")
    parser.add_argument("--out", type=Path, required=True, help="the JSONL file to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        pools = film_pools(load_films())
    except CatalogueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        written, size = write_catalogue(synthetic_items(args.items, args.seed, pools), args.out)
    except OSError as error:
        print(f"error: cannot write {args.out}: {error.strerror or error}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - started
    print(f"{written} items in {seconds:.1f} s, {size} bytes: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
