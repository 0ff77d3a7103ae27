"""The unseen-phrasing benchmark: filter relevance, set metrics, the template check, the checked-in set."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from bench.quality_bench import BenchError, load_queries, named_in_text
from bench.relevance_metrics import METRICS, expected_random, mean_metrics, query_metrics
from bench.unseen_queries import (
    SPECS,
    QuerySetError,
    QuerySpec,
    build_query_set,
    flat,
    matches,
    relevant_items,
    template_collisions,
)
from tests.helpers.tiny_catalogue import tiny_items

DEMO_CATALOGUE = Path("artifacts/runs/demo/catalogue.jsonl")
QUERY_FILE = Path("bench/queries/demo_unseen.jsonl")

FILM = {
    "item_id": "tt1", "title": "The Matrix", "year": 1999, "genres": ["Sci-Fi", "Action"],
    "director": "Lana Wachowski, Lilly Wachowski", "cast": ["Carrie-Anne Moss", "Keanu Reeves"],
    "country": "Australia, United States", "language": "English", "mpaa_rating": "R",
}  # fmt: skip


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ({"genres": "Sci-Fi", "decade": 1990, "cast": "Keanu Reeves"}, True),
        ({"genres": ["Sci-Fi", "Horror"]}, False),  # genres: all of them
        ({"genres_any": ["Horror", "Action"]}, True),
        ({"decade": 2000}, False),
        ({"years": [1995, 1999]}, True),
        ({"director": "Lilly Wachowski"}, True),  # one of the comma-separated directors
        ({"director": "Wachowski"}, False),  # whole names only
        ({"country": ["Japan", "Australia"]}, True),  # country: any of them
        ({"cast": ["Keanu Reeves", "Laurence Fishburne"]}, False),
        ({"title": "the matrix"}, True),
        ({"title_contains": "matr"}, True),
        ({"language_only": "English"}, True),
        ({"non_english": True}, False),
        ({"mpaa_rating": ["PG", "PG-13"]}, False),
    ],
)
def test_filters(filter_: dict[str, object], expected: bool) -> None:
    assert matches(FILM, filter_) is expected


def test_language_only_and_non_english_read_the_whole_language_list() -> None:
    bilingual = FILM | {"language": "French, English"}
    assert not matches(bilingual, {"language_only": "French"})
    assert matches(bilingual, {"language": "French"})
    assert matches(FILM | {"language": "French, Spanish"}, {"non_english": True})
    assert not matches(FILM | {"language": "American English"}, {"non_english": True})
    assert not matches({k: v for k, v in FILM.items() if k != "language"}, {"non_english": True})


def test_unknown_filter_key_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown filter keys"):
        matches(FILM, {"studio": "Warner"})


def test_build_drops_queries_without_relevant_items_and_refuses_typos_in_filters() -> None:
    items = tiny_items()
    specs = (
        QuerySpec("title", "alein", {"title": "Alien"}),
        QuerySpec("decade", "a 1920s comedy", {"genres": "Comedy", "decade": 1920}),
    )
    rows, dropped = build_query_set(items, specs)
    assert [r["relevant"] for r in rows] == [["tt0000000"]]
    assert rows[0]["qid"] == "title-001"
    assert dropped == ["a 1920s comedy"]
    with pytest.raises(QuerySetError, match="Ridley Scot'"):
        build_query_set(items, (QuerySpec("director", "scott", {"director": "Ridley Scot"}),))


def test_template_check_catches_training_phrasings_only() -> None:
    items = [flat(item) for item in tiny_items()]
    hits = template_collisions(
        ["comedy by Joel Coen", "an Joel Coen comedy", "Alien", "a joel coen film", "alein"], items
    )
    assert [query for query, _ in hits] == ["comedy by Joel Coen", "an Joel Coen comedy", "Alien"]


def test_query_metrics_by_hand() -> None:
    figures = query_metrics(["x", "a", "y", "b"], {"a", "b", "c"})
    assert figures["recall@10"] == pytest.approx(2 / 3)
    assert figures["hit@10"] == 1.0
    assert figures["mrr"] == 0.5
    ideal = 1 + 1 / 1.584962500721156 + 0.5
    assert figures["ndcg@10"] == pytest.approx((1 / 1.584962500721156 + 1 / 2.321928094887362) / ideal)
    many = query_metrics([str(i) for i in range(10)], {str(i) for i in range(50)})
    assert many["recall@10"] == 1.0  # capped by min(10, |R|)
    assert query_metrics(["x"], {"a"}) == dict.fromkeys(METRICS, 0.0)


def test_expected_random_equals_the_average_over_all_rankings() -> None:
    items, relevant = [str(i) for i in range(6)], {"0", "1"}
    rows = [query_metrics(list(p), relevant) for p in itertools.permutations(items)]
    exact = {name: sum(r[name] for r in rows) / len(rows) for name in METRICS}
    assert expected_random(6, 2) == pytest.approx(exact)
    assert mean_metrics(rows) == pytest.approx(exact, abs=1e-4)


def test_named_in_text_counts_relevant_items_that_name_the_person() -> None:
    query = {"filter": {"cast": "Keanu Reeves"}, "relevant": ["a", "b"]}
    texts = {"a": "The Matrix. starring Keanu Reeves.", "b": "John Wick. starring Ian McShane."}
    assert named_in_text(query, texts) == 0.5
    assert named_in_text({"filter": {"genres": "Comedy"}, "relevant": ["a"]}, texts) is None


def test_stale_query_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "queries.jsonl"
    row = {"qid": "title-001", "category": "title", "lang": "en", "query": "alein",
           "filter": {"title": "Alien"}, "relevant": ["tt9999999"]}  # fmt: skip
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(BenchError, match="rebuild"):
        load_queries(path, tiny_items())


@pytest.mark.skipif(not DEMO_CATALOGUE.is_file(), reason="needs the demo ID pipeline output")
def test_checked_in_set_matches_the_demo_catalogue_and_no_template_writes_it() -> None:
    items = [json.loads(line) for line in DEMO_CATALOGUE.open(encoding="utf-8")]
    rows, _ = build_query_set(items)
    assert [json.loads(line) for line in QUERY_FILE.open(encoding="utf-8")] == rows
    assert 150 <= len(rows) <= 250
    assert template_collisions([spec.text for spec in SPECS], [flat(i) for i in items]) == []
    for row in rows:
        assert row["relevant"] == relevant_items([flat(i) for i in items], row["filter"])
