"""The three retrieval modes on the tiny bundle: the bundle's lexical index, fusion's guarantees, and the
model component of a hybrid score being exactly what beam search assigns."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from app.inference.model_loading import LoadedModel, load_recommender_model
from semantic_ids.bundle import LEXICAL_DIR, MANIFEST, BundleMismatch, FusionParams, catalogue_hash
from semantic_ids.hybrid import LEXICAL, MODEL, HybridRanker
from semantic_ids.ids import SemanticId
from semantic_ids.lexical import INDEX_META
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
