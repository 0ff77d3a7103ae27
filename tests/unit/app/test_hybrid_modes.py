"""The three retrieval modes on the tiny bundle: the bundle's lexical index, fusion's guarantees, and the
model component of a hybrid score being exactly what beam search assigns."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from app.inference.model_loading import LoadedModel, load_recommender_model
from semantic_ids.bundle import LEXICAL_DIR, MANIFEST, BundleMismatch, FusionParams, catalogue_hash
from semantic_ids.hybrid import LEXICAL, MODEL, HybridRanker
from semantic_ids.ids import SemanticId
from semantic_ids.lexical import INDEX_META, LexicalIndex
from tests.helpers.tiny_bundle import TinyBundle, make_tiny_bundle

QUERIES = ["Alien", "a crime drama by Michael Mann", "Japanese film with Emma Stone", "zzz", "Frago"]
FUSIONS = [FusionParams(), FusionParams(method="rrf", rrf_k=10.0), FusionParams(lexical_depth=0)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> TinyBundle:
    return make_tiny_bundle(tmp_path_factory.mktemp("hybrid"))


@pytest.fixture(scope="module")
def loaded(bundle: TinyBundle) -> LoadedModel:
    # fp32: the tests below compare scores exactly across batch shapes.
    return load_recommender_model(bundle.bundle_dir, bundle.base_models_dir, "cpu", precision="fp32")


def _copy(bundle: TinyBundle, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle.bundle_dir, copy)
    return copy


def test_the_bundle_carries_its_lexical_index(bundle: TinyBundle, loaded: LoadedModel) -> None:
    assert (bundle.bundle_dir / LEXICAL_DIR / INDEX_META).is_file()
    assert bundle.manifest.retrieval is not None and bundle.manifest.retrieval.lexical_index == LEXICAL_DIR
    assert loaded.lexical.catalogue_hash == catalogue_hash(bundle.items)
    assert loaded.lexical.item_ids == [item["item_id"] for item in bundle.items]


def test_an_index_for_another_catalogue_is_refused(bundle: TinyBundle, tmp_path: Path) -> None:
    copy = _copy(bundle, tmp_path)
    meta_path = copy / LEXICAL_DIR / INDEX_META
    meta_path.write_text(json.dumps(json.loads(meta_path.read_text()) | {"catalogue_hash": "0" * 64}))
    with pytest.raises(
        BundleMismatch, match=r"lexical index .* built for catalogue 000000000000, but the bundle"
    ):
        load_recommender_model(copy, bundle.base_models_dir, "cpu")


def test_a_bundle_that_names_a_missing_index_is_refused(bundle: TinyBundle, tmp_path: Path) -> None:
    copy = _copy(bundle, tmp_path)
    shutil.rmtree(copy / LEXICAL_DIR)
    with pytest.raises(BundleMismatch, match="names lexical index 'lexical', which it lacks"):
        load_recommender_model(copy, bundle.base_models_dir, "cpu")


def test_a_schema_1_bundle_gets_its_index_built_at_load(
    bundle: TinyBundle, loaded: LoadedModel, tmp_path: Path
) -> None:
    copy = _copy(bundle, tmp_path)
    shutil.rmtree(copy / LEXICAL_DIR)
    manifest = json.loads((copy / MANIFEST).read_text())
    del manifest["retrieval"]
    (copy / MANIFEST).write_text(json.dumps(manifest | {"schema_version": 1}))
    old = load_recommender_model(copy, bundle.base_models_dir, "cpu")
    assert old.manifest.retrieval is None
    assert old.ranker().fusion == FusionParams()
    assert old.lexical.scores("Alien").combined.tolist() == loaded.lexical.scores("Alien").combined.tolist()


@pytest.mark.parametrize("title", ["Alien", "Heat", "Juno", "Coco"])
@pytest.mark.parametrize("mode", ["hybrid", "lexical"])
def test_a_verbatim_title_comes_first(bundle: TinyBundle, loaded: LoadedModel, title: str, mode: str) -> None:
    (item,) = [item for item in bundle.items if item["title"] == title]
    (top,) = loaded.ranker().rank([title], 5, mode, num_beams=5)
    assert top[0].semantic_id == SemanticId.from_codes(item["semantic_id"])


@pytest.mark.parametrize("fusion", FUSIONS, ids=["linear", "rrf", "beams-only"])
@pytest.mark.parametrize("k", [1, 3, 10, 20, 50])
def test_fusion_returns_min_k_n_distinct_catalogue_items(
    loaded: LoadedModel, fusion: FusionParams, k: int
) -> None:
    ranker = HybridRanker(loaded.decoder(), loaded.lexical, loaded.ids, fusion)
    for mode in ("hybrid", "lexical", "generative"):
        for row in ranker.rank(QUERIES, k, mode, num_beams=4):
            ids = [found.semantic_id for found in row]
            if mode != "generative":  # the model alone may find fewer IDs with a non-zero probability
                assert len(ids) == min(k, len(loaded.ids))
            assert len(set(ids)) == len(ids)
            assert set(ids) <= set(loaded.ids)
            scores = [found.score for found in row]
            if mode != "hybrid":  # hybrid orders by attributes met and decisive matches first (fusion.rank)
                assert scores == sorted(scores, reverse=True)
            assert all(source in (MODEL, LEXICAL) for found in row for source in found.sources)


def test_hybrid_model_scores_are_the_beam_search_probabilities(loaded: LoadedModel) -> None:
    """A beam keeps the probability beam search gave it; a lexical find gets the teacher-forced one;
    and the two agree: teacher forcing scores a beam's ID exactly as the search did."""
    ranker = loaded.ranker()
    beams = loaded.decoder().decode(QUERIES, num_beams=10, top_k=10)
    hybrid = ranker.rank(QUERIES, 20, "hybrid", num_beams=10)
    for query, beam_row, fused_row in zip(QUERIES, beams, hybrid, strict=True):
        by_id = {found.semantic_id: found for found in fused_row}
        for candidate in beam_row:  # every beam is a candidate, found by the model
            assert MODEL in by_id[candidate.semantic_id].sources
            assert by_id[candidate.semantic_id].model_score == pytest.approx(candidate.score, rel=1e-4)
        ids = [found.semantic_id for found in fused_row]
        (forced,) = loaded.decoder().score_ids([query], [ids])
        for found, log_prob in zip(fused_row, forced, strict=True):
            assert found.model_score == pytest.approx(math.exp(log_prob), rel=1e-4)
        assert math.fsum(found.model_score or 0.0 for found in fused_row) <= 1.0 + 1e-4


def test_hybrid_keeps_its_share_of_the_beams(loaded: LoadedModel) -> None:
    """With ``model_beam_share`` 0.5, hybrid's model search keeps half of generative's beams: the items
    the model put among the candidates are those a search of that many beams finds, and the finds still
    fill the list."""
    half = HybridRanker(loaded.decoder(), loaded.lexical, loaded.ids, FusionParams(model_beam_share=0.5))
    assert half.model_beams(10) == 5 and half.model_beams(1) == 1
    everything = len(loaded.ids)  # every item in the answer: each beam among them, whatever its rank
    beams = half.model_beams(max(10, everything))
    assert beams < max(10, everything)
    searched = loaded.decoder().decode(QUERIES, num_beams=beams, top_k=beams)
    for beam_row, row in zip(searched, half.rank(QUERIES, everything, "hybrid", num_beams=10), strict=True):
        assert len(row) == everything
        assert {found.semantic_id for found in row if MODEL in found.sources} == {
            candidate.semantic_id for candidate in beam_row
        }


def test_fusion_time_is_reported(loaded: LoadedModel) -> None:
    seen: list[float] = []
    loaded.ranker().rank(["Alien"], 5, "hybrid", num_beams=5, on_fusion=seen.append)
    assert len(seen) == 1 and seen[0] > 0.0


def test_an_unknown_mode_is_refused(loaded: LoadedModel) -> None:
    with pytest.raises(ValueError, match="unknown mode 'dense'"):
        loaded.ranker().rank(["Alien"], 5, "dense", num_beams=5)


def test_the_title_weight_adds_the_title_match_alone(loaded: LoadedModel) -> None:
    """A typo'd title ("Frago") barely registers with BM25; the title weight lifts the fuzzy title
    match on its own, by exactly its weight times the match, and leaves other candidates' scores."""
    plain = FusionParams(lexical_depth=10, lexical_weight=0.0)
    titled = FusionParams(lexical_depth=10, lexical_weight=0.0, title_weight=1000.0)
    (before,) = HybridRanker(loaded.decoder(), loaded.lexical, loaded.ids, plain).rank(
        ["Frago"], 10, "hybrid", num_beams=4
    )
    (after,) = HybridRanker(loaded.decoder(), loaded.lexical, loaded.ids, titled).rank(
        ["Frago"], 10, "hybrid", num_beams=4
    )
    title = loaded.lexical.scores("Frago").title
    row_of = {semantic_id: row for row, semantic_id in enumerate(loaded.ids)}
    fargo = row_of[after[0].semantic_id]
    assert loaded.lexical.item_ids[fargo] == loaded.lexical.item_ids[int(title.argmax())]
    assert title[fargo] > 0.0
    for found in after:
        expected = math.log(found.model_score or 0.0) + 1000.0 * float(title[row_of[found.semantic_id]])
        assert found.score == pytest.approx(expected, rel=1e-5, abs=1e-4)
    assert {found.semantic_id for found in before} == {found.semantic_id for found in after}


# --- issue 24: every field indexed, attributes, decisive lexical matches ----------------------------


def _ranker_over(loaded: LoadedModel, rows: list[dict[str, Any]], fusion: FusionParams) -> HybridRanker:
    """The tiny bundle's model with a lexical index over ``rows`` (same items, fields changed)."""
    return HybridRanker(loaded.decoder(), LexicalIndex.build(rows, "hash"), loaded.ids, fusion)


@pytest.mark.parametrize("mode", ["lexical", "hybrid"])
def test_an_item_found_only_by_its_tenth_cast_member_comes_first(
    bundle: TinyBundle, loaded: LoadedModel, mode: str
) -> None:
    rows = copy.deepcopy(bundle.items)
    rows[7]["fields"]["cast"] = [f"Extra Number{n}" for n in range(9)] + ["Zbigniew Kowalczyk"]
    (top,) = _ranker_over(loaded, rows, FusionParams()).rank(["Kowalczyk"], 5, mode, num_beams=5)
    assert top[0].semantic_id == loaded.ids[7]
    (top,) = _ranker_over(loaded, rows, FusionParams()).rank(["zbigniew kowalczyk"], 5, mode, num_beams=5)
    assert top[0].semantic_id == loaded.ids[7]


def test_an_accented_and_an_unaccented_name_find_the_same_item(
    bundle: TinyBundle, loaded: LoadedModel
) -> None:
    rows = copy.deepcopy(bundle.items)
    rows[3]["fields"]["cast"] = ["Bérénice Marlohe"]
    ranker = _ranker_over(loaded, rows, FusionParams())
    for query in ["Bérénice Marlohe", "berenice marlohe", "MARLOHE"]:
        (top,) = ranker.rank([query], 3, "hybrid", num_beams=4)
        assert top[0].semantic_id == loaded.ids[3], query


@pytest.mark.parametrize("mode", ["lexical", "hybrid"])
@pytest.mark.parametrize("query", ["a film from the nineties", "90s", "un film des années 90", "die 90er"])
def test_a_decade_never_returns_an_item_outside_it_while_enough_meet_it(
    bundle: TinyBundle, loaded: LoadedModel, mode: str, query: str
) -> None:
    in_decade = {
        loaded.ids[r] for r, item in enumerate(bundle.items) if 1990 <= item["fields"]["year"] <= 1999
    }
    assert len(in_decade) == 5  # 1991, 1993, ..., 1999
    (top,) = loaded.ranker().rank([query], len(in_decade), mode, num_beams=5)
    assert {found.semantic_id for found in top} == in_decade
    (wider,) = loaded.ranker().rank([query], 8, mode, num_beams=5)  # more asked than meet it: the rest after
    assert {found.semantic_id for found in wider[:5]} == in_decade


def test_a_decisive_lexical_match_stays_first_against_the_model(
    bundle: TinyBundle, loaded: LoadedModel
) -> None:
    rows = copy.deepcopy(bundle.items)
    target = 11
    rows[target]["fields"]["writer"] = "Ottessa Moshfegh"
    query = "written by Ottessa Moshfegh"
    ranker = _ranker_over(loaded, rows, FusionParams(lexical_weight=0.0, title_weight=0.0))
    (beams,) = loaded.decoder().decode([query], num_beams=5, top_k=5)
    assert beams[0].semantic_id != loaded.ids[target]  # the model alone prefers another item
    (top,) = ranker.rank([query], 3, "hybrid", num_beams=5)
    assert top[0].semantic_id == loaded.ids[target]
    untiered = _ranker_over(
        loaded, rows, FusionParams(lexical_weight=0.0, title_weight=0.0, decisive_evidence=None)
    )
    (plain,) = untiered.rank([query], 3, "hybrid", num_beams=5)
    assert plain[0].semantic_id != loaded.ids[target]  # without the tier the model's choice wins


@pytest.mark.parametrize("mode", ["lexical", "hybrid"])
def test_a_name_in_full_stays_decisive_among_words_other_rows_hold(
    bundle: TinyBundle, loaded: LoadedModel, mode: str
) -> None:
    """Words around the name that other rows hold ("crime drama") dilute the known-word share below the
    tier's threshold; the full name keeps its rows decisive (``LexicalScores.decisive``)."""
    rows = copy.deepcopy(bundle.items)
    target = 11
    rows[target]["fields"]["cast"] = [*rows[target]["fields"].get("cast", []), "Zbigniew Kowalczyk"]
    query = "zbigniew kowalczyk crime drama heat"
    fusion = FusionParams(lexical_weight=0.0, title_weight=0.0, decisive_evidence=0.9)
    ranker = _ranker_over(loaded, rows, fusion)
    scores = ranker.lexical.scores(query)
    assert scores.known_share[target] < 0.9 <= scores.decisive[target]
    (top,) = ranker.rank([query], 3, mode, num_beams=5)
    assert top[0].semantic_id == loaded.ids[target]


def test_every_film_of_a_name_reaches_the_top_k_beyond_the_lexical_depth(
    bundle: TinyBundle, loaded: LoadedModel
) -> None:
    rows = copy.deepcopy(bundle.items)
    films = [2, 5, 9, 13, 17]
    for row in films:
        rows[row]["fields"]["cast"] = [*rows[row]["fields"].get("cast", []), "Zbigniew Kowalczyk"]
    shallow = FusionParams(lexical_depth=2, lexical_weight=0.0, title_weight=0.0)
    (top,) = _ranker_over(loaded, rows, shallow).rank(["Kowalczyk"], 5, "hybrid", num_beams=3)
    assert {found.semantic_id for found in top} == {loaded.ids[row] for row in films}
    untiered = shallow.model_copy(update={"decisive_evidence": None})
    (plain,) = _ranker_over(loaded, rows, untiered).rank(["Kowalczyk"], 5, "hybrid", num_beams=3)
    assert {found.semantic_id for found in plain} != {loaded.ids[row] for row in films}


def test_a_catalogue_without_cast_loads_and_serves(bundle: TinyBundle, loaded: LoadedModel) -> None:
    rows = copy.deepcopy(bundle.items)
    for row in rows:
        del row["fields"]["cast"]
    ranker = _ranker_over(loaded, rows, FusionParams())
    for mode in ("hybrid", "lexical", "generative"):
        (top,) = ranker.rank(["Heat", "a crime drama by Michael Mann"][:1], 3, mode, num_beams=4)
        assert len(top) == 3
    (top,) = ranker.rank(["a crime drama by Michael Mann"], 3, "hybrid", num_beams=4)
    assert all("Crime" in rows[ranker.row_of[f.semantic_id]]["fields"]["genres"] for f in top)
