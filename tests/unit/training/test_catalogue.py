"""Catalogue import: the films database, profiles, and a user's JSONL with every way it can be wrong."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.semid_cli import run_semid
from training.data.catalogue import CatalogueError, load_films, read_catalogue
from training.data.item_text import MAX_CHARS, render_item_text
from training.data.items import CatalogueItem
from training.profiles import load_profile

_OMDB_COLUMNS = (
    "ID INTEGER, imdbID TEXT, Title TEXT, Year INTEGER, Rating TEXT, Runtime REAL, Genre TEXT, "
    'Director TEXT, Writer TEXT, "Cast" TEXT, Language TEXT, Country TEXT, Awards TEXT, Oscars INTEGER'
)
_TOMATOES_COLUMNS = (
    "ID INTEGER, Meter INTEGER, Reviews INTEGER, BoxOffice REAL, Production TEXT, Consensus TEXT"
)


def _film(
    row_id: int, imdb_id: str, title: str, reviews: int | None, **extra: Any
) -> tuple[tuple[Any, ...], ...]:
    omdb = (
        row_id, imdb_id, title, extra.get("year", 2000), extra.get("rating", "N/A"), 101.0,
        extra.get("genre", "Drama, Comedy"), "Jane Doe", None, extra.get("cast", "A B, C D, N/A"),
        "English", "United States", "", 0,
    )  # fmt: skip
    tomatoes = (row_id, 90, reviews, None, "N/A", extra.get("consensus"))
    return omdb, tomatoes


@pytest.fixture()
def films_db(tmp_path: Path) -> Path:
    path = tmp_path / "movies.db"
    rows = [
        _film(1, "tt0000003", "Third", 50),
        _film(2, "tt0000001", "First", 80, consensus="Sharp and funny."),
        _film(3, "tt0000004", "Tie B", 60),
        _film(4, "tt0000002", "Tie A", 60),
        _film(5, "tt0000001", "First (re-release)", 10),  # same IMDb id, fewer reviews: dropped
        _film(6, "tt0000005", "No reviews", None),
    ]
    return _write_db(path, rows)


def _write_db(path: Path, rows: list[tuple[tuple[Any, ...], ...]]) -> Path:
    with sqlite3.connect(path) as connection:
        connection.execute(f"CREATE TABLE omdb ({_OMDB_COLUMNS})")
        connection.execute(f"CREATE TABLE tomatoes ({_TOMATOES_COLUMNS})")
        connection.executemany(f"INSERT INTO omdb VALUES ({','.join('?' * 14)})", [omdb for omdb, _ in rows])
        connection.executemany("INSERT INTO tomatoes VALUES (?,?,?,?,?,?)", [tom for _, tom in rows])
    connection.close()
    return path


def test_films_are_ordered_by_reviews_then_item_id(films_db: Path) -> None:
    films = [film.to_flat() for film in load_films(films_db)]
    assert [film["item_id"] for film in films] == [
        "tt0000001",
        "tt0000002",
        "tt0000004",
        "tt0000003",
        "tt0000005",
    ]
    assert [film["title"] for film in films[:3]] == ["First", "Tie A", "Tie B"]


def test_limit_takes_the_most_reviewed(films_db: Path) -> None:
    assert [film.title for film in load_films(films_db, limit=2)] == ["First", "Tie A"]


def test_film_fields_are_normalised_and_missing_values_dropped(films_db: Path) -> None:
    first = load_films(films_db)[0].to_flat()
    assert first["genres"] == ["Drama", "Comedy"]
    assert first["cast"] == ["A B", "C D"]  # "N/A" dropped from the list
    assert first["runtime_minutes"] == 101 and isinstance(first["runtime_minutes"], int)
    assert first["consensus"] == "Sharp and funny."
    for dropped in ("mpaa_rating", "writer", "awards", "production", "box_office"):
        assert dropped not in first
    assert all(value not in ("N/A", "", None, []) for value in first.values())


def test_cast_lists_put_the_actors_of_most_films_first(tmp_path: Path) -> None:
    path = tmp_path / "movies.db"
    rows = [
        _film(1, "tt0000001", "Speedy", 90, cast="Ada Minor, Keanu Lead, Zed Extra"),
        _film(2, "tt0000002", "Other", 80, cast="Keanu Lead, Zed Extra"),
        _film(3, "tt0000003", "Third", 70, cast="Bea Once, Keanu Lead"),
    ]
    _write_db(path, rows)
    films = {film.title: film.fields["cast"] for film in load_films(path)}
    assert films["Speedy"] == ["Keanu Lead", "Zed Extra", "Ada Minor"]  # 3 films, 2 films, then 1
    assert films["Third"] == ["Keanu Lead", "Bea Once"]
    # counted over the whole database, not the films a limit keeps
    assert load_films(path, limit=1)[0].fields["cast"] == ["Keanu Lead", "Zed Extra", "Ada Minor"]


def test_not_a_films_database_is_a_catalogue_error(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE x (a)").connection.close()
    with pytest.raises(CatalogueError, match="not a films database"):
        load_films(path)


def test_default_database_profiles() -> None:
    demo = [film.to_flat() for film in load_profile("demo")]
    assert len(demo) == 1000
    reviews = [film["tomato_reviews"] for film in demo]
    assert reviews == sorted(reviews, reverse=True)
    full_ids = [film.item_id for film in load_profile("full")]
    assert len(full_ids) == len(set(full_ids)) == 17_470  # 17,472 rows, two IMDb ids listed twice
    assert [film["item_id"] for film in demo] == full_ids[:1000]
    with pytest.raises(CatalogueError, match="unknown profile"):
        load_profile("huge")


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "catalogue.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


GOOD = json.dumps({"item_id": "a", "title": "Alpha", "year": 1999, "genre": "N/A", "tags": []})


@pytest.mark.parametrize(
    ("lines", "line_number", "problem"),
    [
        ([GOOD, '{"item_id": "b", "title": "Beta"', GOOD], 2, "malformed JSON"),
        ([GOOD, '["b", "Beta"]'], 2, "expected a JSON object"),
        ([GOOD, '{"title": "Beta"}'], 2, "missing item_id"),
        ([GOOD, '{"item_id": "", "title": "Beta"}'], 2, "missing item_id"),
        ([GOOD, "", '{"item_id": "b"}'], 3, "item 'b' has no title"),
        ([GOOD, '{"item_id": "b", "title": "  "}'], 2, "item 'b' has no title"),
        (
            [GOOD, '{"item_id": "b", "title": "B"}', GOOD],
            3,
            "duplicate item_id 'a' \\(first seen on line 1\\)",
        ),
        ([], 1, "empty catalogue"),
        (["", "   "], 1, "empty catalogue"),
    ],
)
def test_bad_jsonl_names_file_line_and_problem(
    tmp_path: Path, lines: list[str], line_number: int, problem: str
) -> None:
    path = _write(tmp_path, lines)
    with pytest.raises(CatalogueError, match=f"^{re.escape(str(path))}:{line_number}: {problem}") as raised:
        read_catalogue(path)
    assert "\n" not in str(raised.value)


def test_good_jsonl_is_normalised(tmp_path: Path) -> None:
    path = _write(tmp_path, [GOOD, "", json.dumps({"item_id": 7, "title": " Seven ", "director": "X"})])
    assert [item.to_flat() for item in read_catalogue(path)] == [
        {"item_id": "a", "title": "Alpha", "year": 1999},
        {"item_id": "7", "title": "Seven", "director": "X"},
    ]


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="no such file"):
        read_catalogue(tmp_path / "absent.jsonl")
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"item_id": "a", "title": "Caf\xe9"}\n')
    with pytest.raises(CatalogueError, match="not UTF-8"):
        read_catalogue(path)


def test_cli_import_error_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _write(tmp_path, [GOOD, GOOD])
    out = tmp_path / "run" / "catalogue.jsonl"
    assert run_semid(monkeypatch, "import-catalogue", "--jsonl", str(source), "--out", str(out)) == 2
    stderr = capsys.readouterr().err.strip().splitlines()
    assert stderr == [f"error: {source}:2: duplicate item_id 'a' (first seen on line 1)"]
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_cli_import_writes_normalised_jsonl_and_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _write(tmp_path, [GOOD, json.dumps({"item_id": "b", "title": "Beta"})])
    out = tmp_path / "run" / "catalogue.jsonl"
    assert run_semid(monkeypatch, "import-catalogue", "--jsonl", str(source), "--out", str(out)) == 0
    assert [json.loads(line)["item_id"] for line in out.read_text().splitlines()] == ["a", "b"]
    report = json.loads((out.parent / "import_report.json").read_text())
    assert report["item_count"] == 2
    assert json.loads(capsys.readouterr().out)["item_count"] == 2


def test_item_text_is_concise_and_mentions_what_queries_ask_for() -> None:
    item = load_profile("demo")[0]
    film = item.to_flat()
    text = render_item_text(item)
    assert text.startswith(f"{film['title']} ({film['year']}).")
    assert film["director"] in text and film["genres"][0] in text
    assert "box office" not in text.lower()
    nested = {"item_id": film["item_id"], "title": film["title"], "fields": dict(film)}
    assert render_item_text(CatalogueItem.from_dict(nested)) == text
    long_item = CatalogueItem("x", "Book", {"author": "Ann Lee", "blurb": "word " * 2000})
    long_text = render_item_text(long_item)
    assert len(long_text) <= MAX_CHARS + 1 and "author: Ann Lee." in long_text
