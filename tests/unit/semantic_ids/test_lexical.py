"""The lexical retriever: BM25 plus fuzzy titles, saved without pickle, refused for another catalogue."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from semantic_ids import lexical
from semantic_ids.bundle import BundleMismatch, catalogue_hash
from semantic_ids.lexical import INDEX_META, LexicalIndex, import_bm25s
from tests.helpers.tiny_catalogue import tiny_items

ITEMS = tiny_items()
HASH = catalogue_hash(ITEMS)
ROW_OF = {item["title"]: row for row, item in enumerate(ITEMS)}
# One edit each (swap, drop, double, replace): words BM25 has never seen.
TYPOS = {"Alein": "Alien", "Frago": "Fargo", "Rokcy": "Rocky", "Klutte": "Klute", "Hugoo": "Hugo"}


@pytest.fixture(scope="module")
def index() -> LexicalIndex:
    return LexicalIndex.build(ITEMS, HASH)


def test_round_trip_gives_the_same_scores_and_no_pickle(index: LexicalIndex, tmp_path: Path) -> None:
    index.save(tmp_path / "lexical")
    files = sorted(p for p in (tmp_path / "lexical").rglob("*") if p.is_file())
    assert files and all(path.suffix in (".npy", ".json", ".txt") for path in files), files
    arrays = {p.parent.name for p in files if p.suffix == ".npy"}
    assert arrays == {"title", "people", "categories", "facts", "lookups"}  # the BM25 groups, the row lookups
    for path in files:  # every array reads back with pickle off
        if path.suffix == ".npy":
            np.load(path, allow_pickle=False)
    loaded = LexicalIndex.load(tmp_path / "lexical", ITEMS, HASH)
    for query in ["Michael Mann crime drama", "Alien", "Japanese film with Emma Stone", "Frago"]:
        np.testing.assert_allclose(loaded.scores(query).combined, index.scores(query).combined, rtol=1e-6)


def test_stored_row_lookups_load_as_built_and_the_previous_format_builds_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row lookups (titles, trigrams, attributes, people) read back give the built index's scores;
    an index of the previous format, which kept none, builds them from the rows; a lookups file missing
    from a current index is refused."""
    monkeypatch.setattr(lexical, "TITLE_PREFILTER_MIN", 1)  # the trigrams too
    monkeypatch.setattr(lexical, "TITLE_CANDIDATES", 3)
    built = LexicalIndex.build(ITEMS, HASH)
    built.save(tmp_path / "lexical")
    queries = [
        "Michael Mann crime drama",
        "looking for Frago",
        "Japanese film with Emma Stone",
        "a 90s comedy",
    ]
    loaded = LexicalIndex.load(tmp_path / "lexical", ITEMS, HASH)
    for query in queries:
        want, got = built.scores(query), loaded.scores(query)
        np.testing.assert_array_equal(got.combined, want.combined)
        np.testing.assert_array_equal(got.satisfied, want.satisfied)
        np.testing.assert_array_equal(got.named, want.named)
    meta = json.loads((tmp_path / "lexical" / INDEX_META).read_text())
    (tmp_path / "lexical" / INDEX_META).write_text(json.dumps(meta | {"format": lexical.PREVIOUS_FORMAT}))
    (tmp_path / "lexical" / "lookups" / "people.rows.npy").unlink()
    previous = LexicalIndex.load(tmp_path / "lexical", ITEMS, HASH)
    np.testing.assert_array_equal(previous.scores(queries[0]).combined, built.scores(queries[0]).combined)
    (tmp_path / "lexical" / INDEX_META).write_text(json.dumps(meta))
    with pytest.raises(BundleMismatch, match="people"):
        LexicalIndex.load(tmp_path / "lexical", ITEMS, HASH)


def test_another_catalogue_is_refused_with_what_differs(index: LexicalIndex, tmp_path: Path) -> None:
    index.save(tmp_path / "lexical")
    other = "f" * 64
    with pytest.raises(BundleMismatch, match=rf"built for catalogue {HASH[:12]}.*catalogue is ffffffffffff"):
        LexicalIndex.load(tmp_path / "lexical", ITEMS, other)
    with pytest.raises(BundleMismatch, match="another order"):
        LexicalIndex.load(tmp_path / "lexical", list(reversed(ITEMS)), HASH)
    meta = json.loads((tmp_path / "lexical" / INDEX_META).read_text())
    (tmp_path / "lexical" / INDEX_META).write_text(json.dumps(meta | {"format": "pickle/0"}))
    with pytest.raises(BundleMismatch, match="format 'pickle/0'"):
        LexicalIndex.load(tmp_path / "lexical", ITEMS, HASH)


@pytest.mark.parametrize("title", ["Alien", "Heat", "Rocky", "Klute"])
def test_a_verbatim_title_comes_first(index: LexicalIndex, title: str) -> None:
    assert index.top(title, 3)[0][0] == ROW_OF[title]


def test_typo_titles_bm25_misses_and_the_title_match_finds(index: LexicalIndex) -> None:
    bm25_hits = fused_hits = 0
    for typo, title in TYPOS.items():
        scores = index.scores(f"looking for {typo}")
        bm25_hits += int(scores.bm25[ROW_OF[title]] > 0)
        top3 = np.argsort(-scores.combined, kind="stable")[:3]  # "Frago" is nearer "Argo" than "Fargo"
        fused_hits += int(ROW_OF[title] in top3)
    assert bm25_hits == 0  # a misspelt word is not in BM25's vocabulary
    assert fused_hits == len(TYPOS)


def test_scores_lie_in_0_1_and_unknown_words_score_nothing(index: LexicalIndex) -> None:
    scores = index.scores("Michael Mann crime drama")
    assert scores.combined.min() >= 0.0 and scores.combined.max() <= 1.0
    assert index.scores("zzzz qqqq").bm25.max() == 0.0
    assert index.top("zzzz qqqq", 5) == []


def test_coverage_says_how_much_of_the_query_the_best_document_matched(index: LexicalIndex) -> None:
    # The same best document: matched in full, then with words no item uses, then only one word of three.
    whole, diluted = index.scores("Michael Mann"), index.scores("Michael Mann zzzz qqqq")
    heat = ROW_OF["Heat"]
    assert int(np.argmax(whole.bm25)) == int(np.argmax(diluted.bm25)) == heat
    assert whole.coverage == pytest.approx(1.0, abs=1e-6)  # one document holds every word at its best
    assert 0.0 < diluted.coverage < 0.7  # two of four words unknown: far from a full match
    assert 0.0 < index.scores("Michael nightmares spooky").coverage < 0.5  # one word of three
    assert index.scores("zzzz qqqq").coverage == 0.0
    # Fusion's evidence scales the BM25 part by it; the lexical ranking does not change.
    np.testing.assert_allclose(whole.evidence, whole.combined, rtol=1e-6)
    assert diluted.evidence[heat] < diluted.combined[heat]
    assert np.array_equal(np.argsort(-diluted.bm25, kind="stable"), np.argsort(-whole.bm25, kind="stable"))


def test_a_typod_title_inside_a_phrase_beats_titles_that_share_only_a_stopword() -> None:
    rows = [
        {"item_id": f"tt{row:07d}", "title": title, "fields": {"year": 2000}}
        for row, title in enumerate(["The Rover", "The Lookout", "The Matrix", "The Drop", "Into the Woods"])
    ]
    index = LexicalIndex.build(rows, "hash")
    title = index.scores("looking for the marix").title  # no BM25 help: "marix" is in no document
    assert int(np.argmax(title)) == 2 and title[2] > 0.0
    assert (np.delete(title, 2) < title[2]).all()  # WRatio over all words scored every "The ..." alike
    assert int(np.argmax(index.scores("into the").title)) == 4  # stopwords alone: matched whole


def test_framing_words_are_left_out_of_queries_not_out_of_titles(tmp_path: Path) -> None:
    bee = {"item_id": "tt9999999", "title": "Bee Movie", "fields": {"year": 2007, "genres": ["Animation"]}}
    rows = [*ITEMS, bee]
    plain = LexicalIndex.build(rows, HASH)
    framed = LexicalIndex.build(rows, HASH, ["a movie", "show me"])
    assert framed.framing == ["me", "movie", "show"]  # tokenised as queries are
    assert plain.scores("a scary movie").bm25[len(ITEMS)] > 0.0  # matched on "movie" alone
    assert framed.scores("a scary movie").bm25.max() == 0.0
    assert framed.top("Bee Movie", 1)[0][0] == len(ITEMS)  # the title still finds itself
    framed.save(tmp_path / "lexical")
    loaded = LexicalIndex.load(tmp_path / "lexical", rows, HASH)
    assert loaded.framing == framed.framing
    np.testing.assert_allclose(
        loaded.scores("a movie by Ridley Scott").bm25, framed.scores("a movie by Ridley Scott").bm25
    )


def test_bm25s_is_imported_with_jax_kept_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # bm25s runs a JAX op at import where JAX is installed; on a GPU that would take 75 % of its memory.
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    assert import_bm25s().BM25 is not None
    assert os.environ["JAX_PLATFORMS"] == "cpu"
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")  # an operator's own choice is kept
    import_bm25s()
    assert os.environ["JAX_PLATFORMS"] == "cuda"


def test_a_rebuilt_index_scores_as_a_fresh_build(index: LexicalIndex) -> None:
    """After adds, changes and deletes, reusing the unchanged rows' tokens gives a fresh build's scores."""
    first = index.rebuilt(ITEMS, HASH)  # now it holds the tokens of every row
    added = {"item_id": "new", "title": "Brand New Picture", "fields": {"director": "Ida Lupino"}}
    changed = {**ITEMS[2], "title": "Fargo Revisited"}
    rows = [changed if row is ITEMS[2] else row for row in ITEMS[3:]] + [added, changed]
    rebuilt, fresh = first.rebuilt(rows, "h"), LexicalIndex.build(rows, "h")
    assert rebuilt.item_ids == fresh.item_ids
    for query in ("brand new picture", "fargo revisited", "lupino", "Alien", "a Ridley Scott film"):
        assert np.allclose(rebuilt.scores(query).ranking, fresh.scores(query).ranking), query


def test_a_large_catalogue_matches_titles_among_those_sharing_trigrams(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past ``TITLE_PREFILTER_MIN`` titles only the ``TITLE_CANDIDATES`` sharing the most trigrams with the
    query are fuzzy-matched: typo'd titles still find their film with the score a full scan gives it, and
    titles left out score 0."""
    full = LexicalIndex.build(ITEMS, HASH)
    monkeypatch.setattr(lexical, "TITLE_PREFILTER_MIN", 1)
    monkeypatch.setattr(lexical, "TITLE_CANDIDATES", 3)
    filtered = LexicalIndex.build(ITEMS, HASH)
    for typo, title in TYPOS.items():
        want, got = full.scores(f"looking for {typo}").title, filtered.scores(f"looking for {typo}").title
        row = ROW_OF[title]
        assert got[row] == pytest.approx(want[row]) and got[row] > 0.0
        assert np.count_nonzero(got) <= 3
        assert set(np.flatnonzero(got)) <= set(np.flatnonzero(want))
    assert not filtered.scores("zzzz qqqq").title.any()  # no trigram in common: nothing to match
    grams = lexical.TitleGrams.build(["matrix", "the rover", "marx"])
    assert grams.candidates("marix", 1).tolist() == [0]
    assert sorted(grams.candidates("marix", 5).tolist()) == [0, 2]
