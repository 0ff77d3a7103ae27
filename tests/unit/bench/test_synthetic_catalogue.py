"""The synthetic catalogue: unique ids and titles, seeded, a readable catalogue, shaped like the films."""

from __future__ import annotations

import json
from collections import Counter
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from bench.synthetic_catalogue import FilmPools, film_pools, main, synthetic_items
from training.data.catalogue import load_films, read_catalogue
from training.data.items import CatalogueItem

COUNT = 20_000


@pytest.fixture(scope="module")
def pools() -> FilmPools:
    return film_pools(load_films())


@pytest.fixture(scope="module")
def rows(pools: FilmPools) -> list[dict[str, Any]]:
    return list(synthetic_items(COUNT, seed=0, pools=pools))


def _share(rows: list[dict[str, Any]], test: Any) -> float:
    return sum(1 for row in rows if test(row)) / len(rows)


def test_ids_and_titles_are_unique_and_no_title_is_a_real_films(
    rows: list[dict[str, Any]], pools: FilmPools
) -> None:
    assert len(rows) == COUNT
    assert len({row["item_id"] for row in rows}) == COUNT
    titles = [row["title"].casefold() for row in rows]
    assert len(set(titles)) == COUNT
    assert not set(titles) & pools.real_titles
    assert all(row["title"] == row["title"].strip() and row["title"] for row in rows)


def test_fields_have_the_films_names_and_types(rows: list[dict[str, Any]], pools: FilmPools) -> None:
    film_types = {key: type(value) for film in pools.films for key, value in film.items()}
    for row in rows[:2000]:
        assert set(row) <= set(film_types) - {"consensus"}
        for key, value in row.items():
            assert isinstance(value, film_types[key]), (key, value)
        for key in ("genres", "cast"):
            assert all(isinstance(part, str) and part for part in row.get(key, []))
        assert len(row.get("cast", [])) == len(set(row.get("cast", [])))


def test_same_seed_same_rows_other_seed_other_rows(pools: FilmPools) -> None:
    first = list(synthetic_items(300, seed=5, pools=pools))
    assert first == list(synthetic_items(300, seed=5, pools=pools))
    other = list(synthetic_items(300, seed=6, pools=pools))
    assert sum(a["title"] == b["title"] for a, b in zip(first, other, strict=True)) < 10


def test_rows_are_a_readable_catalogue(rows: list[dict[str, Any]], tmp_path: Path) -> None:
    path = tmp_path / "syn.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows[:3000]), "utf-8")
    items = read_catalogue(path)
    assert [item.to_flat() for item in items] == rows[:3000]


def test_field_distributions_follow_the_films(rows: list[dict[str, Any]], pools: FilmPools) -> None:
    films = pools.films

    def near(test: Any, points: float = 0.03) -> None:
        assert abs(_share(rows, test) - _share(films, test)) < points

    near(lambda row: "Drama" in row.get("genres", []))
    near(lambda row: "Comedy" in row.get("genres", []))
    near(lambda row: row.get("mpaa_rating") == "R")
    near(lambda row: "cast" not in row)
    near(lambda row: "France" in row.get("country", ""))
    near(lambda row: row["year"] < 1970)
    years = [film["year"] for film in films]
    assert min(years) <= min(row["year"] for row in rows) and max(row["year"] for row in rows) <= max(years)
    # A rating comes with its film's year, so no item is rated before the first rated film.
    first_rated = min(film["year"] for film in films if "mpaa_rating" in film)
    assert min(row["year"] for row in rows if "mpaa_rating" in row) >= first_rated
    cast_sizes = [len(row["cast"]) for row in rows if "cast" in row]
    film_sizes = [len(film["cast"]) for film in films if "cast" in film]
    assert abs(sum(cast_sizes) / len(cast_sizes) - sum(film_sizes) / len(film_sizes)) < 0.5


def test_a_small_catalogue_credits_the_films_people_and_orders_a_cast_by_prominence(
    rows: list[dict[str, Any]], pools: FilmPools
) -> None:
    real = set(pools.names)
    assert all(name in real for row in rows[:2000] for name in row.get("cast", []))
    films_of = dict(zip(pools.names, pools.cast_films, strict=True))
    for row in rows[:2000]:
        counts = [films_of[name] for name in row.get("cast", [])]
        assert counts == sorted(counts, reverse=True)


def test_a_large_catalogue_has_more_people_each_credited_about_as_often(
    rows: list[dict[str, Any]], pools: FilmPools
) -> None:
    count = 100_000  # six copies of the films' people; only the first rows are made
    copies = round(count / len(pools.films))
    head = list(islice(synthetic_items(count, seed=0, pools=pools), 3000))
    credits = [name for row in head for name in row.get("cast", [])]
    real = set(pools.names)
    assert abs(sum(name in real for name in credits) / len(credits) - 1 / copies) < 0.03
    firsts, surnames = set(pools.first_names), set(pools.surnames)
    for name in credits:
        if name not in real:
            first, surname = name.split(" ")
            assert first in firsts and surname in surnames
    # The busiest actor of 3,000 items is credited far less often than with one copy (20,000 items).
    one_copy = [name for row in rows[:3000] for name in row.get("cast", [])]
    busiest = Counter(credits).most_common(1)[0][1]
    assert busiest < Counter(one_copy).most_common(1)[0][1] / 2


def test_titles_stay_unique_when_the_words_run_out() -> None:
    films = [
        CatalogueItem(f"tt{number}", title, {"year": 2000 + number, "genres": ["Drama"]})
        for number, title in enumerate(["Heat", "The Thing", "Love Actually"])
    ]
    rows = list(synthetic_items(400, seed=0, pools=film_pools(films)))
    titles = [row["title"].casefold() for row in rows]
    assert len(set(titles)) == 400
    assert not set(titles) & {"heat", "the thing", "love actually"}
    assert any(title.endswith(" 2") for title in titles)  # numbered once the combinations are used up
    assert all("director" not in row and row["genres"] == ["Drama"] for row in rows)


def test_cli_writes_the_file_and_prints_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "syn.jsonl"
    assert main(["--items", "250", "--out", str(out), "--seed", "3"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith("250 items") and str(out.stat().st_size) in printed[0]
    assert len(read_catalogue(out)) == 250
    assert [path.name for path in out.parent.iterdir()] == ["syn.jsonl"]  # no temporary file left


@pytest.mark.parametrize("items", ["0", "-3", "many"])
def test_cli_refuses_a_bad_item_count(items: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "syn.jsonl"
    with pytest.raises(SystemExit) as exited:
        main(["--items", items, "--out", str(out)])
    assert exited.value.code != 0
    assert "--items" in capsys.readouterr().err
    assert not out.exists()


def test_no_title_reads_as_a_missing_value() -> None:
    """A one-word title drawn as "None" would be read as no title at all (it happened at 10^5 items)."""
    films = [
        CatalogueItem(f"tt{number}", title, {"year": 2000 + number})
        for number, title in enumerate(["None", "Null", "Heat"])
    ]
    rows = list(synthetic_items(200, seed=0, pools=film_pools(films)))
    assert not {row["title"].casefold() for row in rows} & {"none", "null", "n/a", "na", ""}
