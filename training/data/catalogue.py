"""The item catalogue: the default films (bokeh-sampledata's movies.db) or a user's JSONL file,
read into ``CatalogueItem``s (written back as one flat JSON object per line: ``{"item_id": str,
"title": str, ...other fields}``).

Missing values are omitted rather than stored as ``"N/A"`` or ``""``, so every consumer can test a
field with ``in``. Bad input raises ``CatalogueError`` with one line naming the file, the line and the
problem; nothing is written in that case.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sqlite3
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from training.data.items import CatalogueItem

logger = logging.getLogger(__name__)

_MISSING = {"", "N/A", "n/a", "NA", "None", "null"}

# Films come from two tables joined on ID. Ordering by review count (then imdbID) makes the demo
# profile a stable "most-reviewed N" and the full profile a stable order too.
_FILMS_QUERY = """
SELECT o.imdbID, o.Title, o.Year, o.Rating, o.Runtime, o.Genre, o.Director, o.Writer, o."Cast",
       o.Language, o.Country, o.Awards, o.Oscars,
       t.Meter, t.Reviews, t.BoxOffice, t.Production, t.Consensus
FROM omdb AS o JOIN tomatoes AS t ON o.ID = t.ID
ORDER BY COALESCE(t.Reviews, 0) DESC, o.imdbID ASC, o.ID ASC
"""


class CatalogueError(ValueError):
    """A catalogue that cannot be used; the message is one line: file, line number, problem."""


def default_films_db() -> Path:
    """movies.db inside the bokeh-sampledata package (found without importing it)."""
    spec = importlib.util.find_spec("bokeh_sampledata")
    if spec is None or not spec.submodule_search_locations:
        raise CatalogueError("the default catalogue needs the package bokeh-sampledata==2026.1; install it")
    path = Path(next(iter(spec.submodule_search_locations))) / "_data" / "movies.db"
    if not path.is_file():
        raise CatalogueError(f"{path}: not found; reinstall bokeh-sampledata==2026.1")
    return path


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in _MISSING)


def _split_list(value: str | None) -> list[str]:
    if _is_missing(value):
        return []
    assert value is not None
    return [part.strip() for part in value.split(",") if not _is_missing(part)]


def _film_record(row: sqlite3.Row) -> CatalogueItem:
    record: dict[str, Any] = {
        "item_id": row["imdbID"].strip(),
        "title": row["Title"].strip(),
        "year": row["Year"],
        "mpaa_rating": row["Rating"],
        "runtime_minutes": None if row["Runtime"] is None else round(row["Runtime"]),
        "genres": _split_list(row["Genre"]),
        "director": row["Director"],
        "writer": row["Writer"],
        "cast": _split_list(row["Cast"]),
        "language": row["Language"],
        "country": row["Country"],
        "production": row["Production"],
        "awards": row["Awards"],
        "oscars_won": row["Oscars"],
        "tomato_meter": row["Meter"],
        "tomato_reviews": row["Reviews"],
        "box_office": None if row["BoxOffice"] is None else round(row["BoxOffice"]),
        "consensus": row["Consensus"],
    }
    kept = {
        key: value.strip() if isinstance(value, str) else value
        for key, value in record.items()
        if not _is_missing(value) and value != []
    }
    return CatalogueItem.from_dict(kept)


def load_films(db_path: Path | None = None, *, limit: int | None = None) -> list[CatalogueItem]:
    """Films ordered by Rotten Tomatoes review count (desc), ties by item id; the first ``limit``.

    movies.db has 17,472 rows but two IMDb ids appear twice (Apocalypse Now and its Redux share
    tt0078788; tt0850669 is listed under two titles). Item ids must be unique, so the most-reviewed
    row of each id is kept: 17,470 films.
    """
    path = db_path or default_films_db()
    if not path.is_file():
        raise CatalogueError(f"{path}: no such database file")
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    connection.row_factory = sqlite3.Row
    try:
        rows = connection.execute(_FILMS_QUERY).fetchall()
    except sqlite3.Error as error:
        raise CatalogueError(f"{path}: not a films database ({error})") from error
    finally:
        connection.close()
    films: list[CatalogueItem] = []
    seen: set[str] = set()
    for row in rows:
        if _is_missing(row["imdbID"]) or _is_missing(row["Title"]):
            continue
        record = _film_record(row)
        if record.item_id in seen:
            logger.info("skipping a second row for %s (%s)", record.item_id, record.title)
            continue
        seen.add(record.item_id)
        films.append(record)
        if limit is not None and len(films) >= limit:
            break
    films_of = Counter(name for row in rows for name in set(_split_list(row["Cast"])))
    return [_cast_by_prominence(film, films_of) for film in films]


def _cast_by_prominence(film: CatalogueItem, films_of: Counter[str]) -> CatalogueItem:
    """The film with its cast ordered by how many films of the database list each name, most first
    (ties as listed). movies.db lists a cast alphabetically, not by billing: The Matrix began "Ada
    Nicodemou, Anthony Ray Parker, ..." and its item text, which shows the first six, never named Keanu
    Reeves. An actor in many films is the best stand-in for billing the database offers."""
    cast = film.fields.get("cast")
    if not cast:
        return film
    ordered = sorted(cast, key=lambda name: -films_of[name])  # stable: ties keep their order
    return replace(film, fields={**film.fields, "cast": ordered})


def _normalise_line(path: Path, number: int, line: str) -> CatalogueItem:
    where = f"{path}:{number}"
    try:
        raw = json.loads(line.strip())
    except json.JSONDecodeError as error:
        raise CatalogueError(f"{where}: malformed JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(raw, dict):
        raise CatalogueError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    item_id, title = raw.get("item_id"), raw.get("title")
    if isinstance(item_id, int) and not isinstance(item_id, bool):
        item_id = str(item_id)
    if not isinstance(item_id, str) or _is_missing(item_id):
        raise CatalogueError(f"{where}: missing item_id (a non-empty string)")
    if not isinstance(title, str) or _is_missing(title):
        raise CatalogueError(f"{where}: item {item_id!r} has no title (a non-empty string)")
    fields = {
        key: value.strip() if isinstance(value, str) else value
        for key, value in raw.items()
        if key not in ("item_id", "title") and not _is_missing(value) and value not in ([], {})
    }
    return CatalogueItem(item_id=item_id.strip(), title=title.strip(), fields=fields)


def read_catalogue(path: Path) -> list[CatalogueItem]:
    """Read and validate a JSONL catalogue (a user's file or a normalised one)."""
    if not path.is_file():
        raise CatalogueError(f"{path}: no such file")
    items: list[CatalogueItem] = []
    first_line: dict[str, int] = {}
    with path.open(encoding="utf-8") as handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                item = _normalise_line(path, number, line)
                if item.item_id in first_line:
                    raise CatalogueError(
                        f"{path}:{number}: duplicate item_id {item.item_id!r} "
                        f"(first seen on line {first_line[item.item_id]})"
                    )
                first_line[item.item_id] = number
                items.append(item)
        except UnicodeDecodeError as error:
            raise CatalogueError(f"{path}: not UTF-8 text ({error.reason})") from None
    if not items:
        raise CatalogueError(f"{path}:1: empty catalogue: expected one JSON object per line")
    return items
