"""Hybrid mode's dense source on the tiny bundle: the item vectors round-trip through the bundle and are
checked against its catalogue, and fusion with them keeps every guarantee of the other sources."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.inference.model_loading import LoadedModel, load_recommender_model
from semantic_ids.bundle import DENSE_DIR, MANIFEST, SCHEMA_VERSION, BundleMismatch, FusionParams
from semantic_ids.dense import INDEX_META, VECTORS, DenseIndex, DenseRetriever
from semantic_ids.fusion import DENSE, LEXICAL, MODEL
from semantic_ids.ids import SemanticId
from semantic_ids.item_text import render_row
from tests.helpers.tiny_bundle import TinyBundle, make_tiny_bundle
from tests.helpers.tiny_encoder import HashingEncoder

QUERIES = ["Alien", "a crime drama by Michael Mann", "Japanese film with Emma Stone", "zzz", "Frago"]
DENSE_FUSION = FusionParams(dense_depth=5, dense_weight=8.0)
FUSIONS = [
    DENSE_FUSION,
    FusionParams(method="rrf", rrf_k=10.0, dense_depth=5, dense_weight=1.0),
    FusionParams(lexical_depth=0, dense_depth=10),  # dense finds join the beams, the model ranks them
    FusionParams(lexical_depth=0, lexical_weight=0.0, dense_depth=0, dense_weight=4.0),  # rerank only
]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> TinyBundle:
    return make_tiny_bundle(tmp_path_factory.mktemp("dense"), dense=True, fusion=DENSE_FUSION)


@pytest.fixture(scope="module")
def loaded(bundle: TinyBundle) -> LoadedModel:
    return load_recommender_model(
        bundle.bundle_dir, bundle.base_models_dir, "cpu", precision="fp32", query_encoder=HashingEncoder()
    )


def _copy(bundle: TinyBundle, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle.bundle_dir, copy)
    return copy


def _load(folder: Path, bundle: TinyBundle) -> LoadedModel:
    return load_recommender_model(folder, bundle.base_models_dir, "cpu", query_encoder=HashingEncoder())


def test_the_item_vectors_round_trip_through_the_bundle(bundle: TinyBundle, loaded: LoadedModel) -> None:
    manifest = bundle.manifest
    assert manifest.schema_version == SCHEMA_VERSION == 3
    assert manifest.retrieval is not None and manifest.retrieval.dense_index == DENSE_DIR
    assert manifest.embedding.model == HashingEncoder.model
    assert loaded.dense is not None and loaded.fusion == DENSE_FUSION
    index = loaded.dense.index
    expected = HashingEncoder().encode([render_row(item) for item in bundle.items])
    assert index.vectors.dtype == np.float32 and np.allclose(index.vectors, expected, atol=1e-6)
    assert index.item_ids == [item["item_id"] for item in bundle.items]
    assert index.catalogue_hash == manifest.catalogue.content_hash


def test_vectors_for_another_catalogue_are_refused(bundle: TinyBundle, tmp_path: Path) -> None:
    copy = _copy(bundle, tmp_path)
    meta_path = copy / DENSE_DIR / INDEX_META
    meta_path.write_text(json.dumps(json.loads(meta_path.read_text()) | {"catalogue_hash": "0" * 64}))
    with pytest.raises(
        BundleMismatch, match=r"dense index .* built for catalogue 000000000000, but the bundle"
    ):
        _load(copy, bundle)


def test_vectors_that_do_not_fit_the_catalogue_are_refused(bundle: TinyBundle, tmp_path: Path) -> None:
    copy = _copy(bundle, tmp_path)
    vectors = np.load(copy / DENSE_DIR / VECTORS)
    np.save(copy / DENSE_DIR / VECTORS, vectors[:-1])  # one item short
    with pytest.raises(
        BundleMismatch, match=r"holds float32 vectors of shape \(19, 64\); expected float32 \(20, 64\)"
    ):
        _load(copy, bundle)
    meta_path = copy / DENSE_DIR / INDEX_META
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps(meta | {"item_ids": meta["item_ids"][::-1]}))
    with pytest.raises(BundleMismatch, match="lists its items in another order than the catalogue"):
        _load(copy, bundle)


def test_a_bundle_that_names_missing_vectors_is_refused(bundle: TinyBundle, tmp_path: Path) -> None:
    copy = _copy(bundle, tmp_path)
    shutil.rmtree(copy / DENSE_DIR)
    with pytest.raises(BundleMismatch, match="names dense index 'dense', which it lacks"):
        _load(copy, bundle)


def test_queries_need_an_encoder_of_the_vectors_model(bundle: TinyBundle, loaded: LoadedModel) -> None:
    with pytest.raises(
        BundleMismatch, match=r"cannot embed queries for its dense index: .* not 'tests/hashed"
    ):
        load_recommender_model(bundle.bundle_dir, bundle.base_models_dir, "cpu")  # MiniLM only

    class Other(HashingEncoder):
        model = "another-model"

    assert loaded.dense is not None
    with pytest.raises(
        BundleMismatch, match="64-d vectors of tests/hashed-char-trigrams, but the query encoder"
    ):
        DenseRetriever(loaded.dense.index, Other())


def test_a_bundle_without_vectors_ranks_as_before(
    bundle: TinyBundle, loaded: LoadedModel, tmp_path: Path
) -> None:
    copy = _copy(bundle, tmp_path)
    shutil.rmtree(copy / DENSE_DIR)
    manifest = json.loads((copy / MANIFEST).read_text())
    retrieval = {k: v for k, v in manifest["retrieval"].items() if k != "dense_index"}
    fusion = {k: v for k, v in retrieval["fusion"].items() if not k.startswith("dense_")}
    (copy / MANIFEST).write_text(
        json.dumps(manifest | {"schema_version": 2, "retrieval": retrieval | {"fusion": fusion}})
    )
    old = load_recommender_model(copy, bundle.base_models_dir, "cpu", precision="fp32")  # no encoder needed
    assert old.dense is None and not old.fusion.uses_dense
    ranked = old.ranker().rank(QUERIES, 5, "hybrid", num_beams=5)
    assert loaded.dense is not None  # the vectors are there, but a fusion without them leaves them out
    without = loaded.ranker(old.fusion).rank(QUERIES, 5, "hybrid", num_beams=5)
    assert [[r.semantic_id for r in row] for row in ranked] == [
        [r.semantic_id for r in row] for row in without
    ]
    assert all(r.dense_score is None and DENSE not in r.sources for row in ranked for r in row)


@pytest.mark.parametrize("fusion", FUSIONS, ids=["linear", "rrf", "dense-candidates", "dense-rerank"])
@pytest.mark.parametrize("k", [1, 3, 10, 20, 50])
def test_fusion_with_the_dense_source_returns_min_k_n_distinct_catalogue_items(
    loaded: LoadedModel, fusion: FusionParams, k: int
) -> None:
    ranker = loaded.ranker(fusion)
    for row in ranker.rank(QUERIES, k, "hybrid", num_beams=4):
        ids = [found.semantic_id for found in row]
        assert len(ids) == min(k, len(loaded.ids)) == len(set(ids))
        assert set(ids) <= set(loaded.ids)
        assert all(set(found.sources) <= {MODEL, LEXICAL, DENSE} and found.sources for found in row)
        assert all(found.dense_score is not None and -1.0 <= found.dense_score <= 1.0 + 1e-6 for found in row)


def test_a_query_that_spells_an_items_text_finds_it_through_the_dense_source(
    bundle: TinyBundle, loaded: LoadedModel
) -> None:
    fusion = FusionParams(lexical_depth=0, lexical_weight=0.0, dense_depth=3, dense_weight=1000.0)
    for item in bundle.items[::4]:
        (found,) = loaded.ranker(fusion).rank([render_row(item)], 5, "hybrid", num_beams=2)
        top = found[0]
        assert top.semantic_id == SemanticId.from_codes(item["semantic_id"])
        assert DENSE in top.sources and top.dense_score == pytest.approx(1.0, abs=1e-5)


def test_dense_finds_get_the_models_teacher_forced_probability(loaded: LoadedModel) -> None:
    """Scored inside the beam search, a dense find gets exactly what a pass of its own would give it
    (with the estimate for finds far behind on their first code off: ``test_forced_ids`` covers it)."""
    # No lexical candidates at all: decisive lexical matches would join even at lexical depth 0.
    dense_only = FusionParams(
        lexical_depth=0, dense_depth=10, dense_weight=8.0, decisive_evidence=None, estimate_margin=None
    )
    ranker = loaded.ranker(dense_only)
    gathered = ranker.gather(QUERIES, 5, num_beams=3)  # 5 beams of 20 items: most finds are not beams
    for query, candidates in zip(QUERIES, gathered, strict=True):
        assert sum(sources == (DENSE,) for sources in candidates.sources) >= 5
        (forced,) = loaded.decoder().score_ids([query], [[loaded.ids[row] for row in candidates.rows]])
        assert candidates.log_probs.tolist() == pytest.approx(forced, rel=1e-4)


def test_dense_time_is_reported_only_when_the_source_runs(loaded: LoadedModel) -> None:
    fusion_s: list[float] = []
    dense_s: list[float] = []
    loaded.ranker().rank(
        ["Alien"], 5, "hybrid", num_beams=5, on_fusion=fusion_s.append, on_dense=dense_s.append
    )
    assert len(dense_s) == 1 and 0.0 < dense_s[0] <= fusion_s[0]
    loaded.ranker(FusionParams()).rank(["Alien"], 5, "hybrid", num_beams=5, on_dense=dense_s.append)
    assert len(dense_s) == 1  # the default fusion leaves the dense source out


def test_a_dense_index_is_built_from_vectors_in_catalogue_order(bundle: TinyBundle) -> None:
    vectors = np.arange(40, dtype=np.float32).reshape(20, 2) + 1.0
    index = DenseIndex.build(vectors, bundle.items, "hash", "m")
    assert np.allclose(np.linalg.norm(index.vectors, axis=1), 1.0)
    with pytest.raises(ValueError, match=r"\(19, 2\) item vectors for 20 catalogue items"):
        DenseIndex.build(vectors[:19], bundle.items, "hash", "m")


def test_the_neighbour_index_finds_the_exact_neighbours_on_a_small_index() -> None:
    """Past ``ANN_MIN_ITEMS`` the dense source searches faiss's inverted lists, then computes the exact
    cosines of what they found: on clustered vectors, each query's top 10 is the exact top 10, with the
    exact cosines, and every other item stays at 0 until ``fill`` computes it."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((50, 32)).astype(np.float32)
    vectors = centres[rng.integers(0, 50, 5000)] + 0.3 * rng.standard_normal((5000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = [{"item_id": f"i{n}"} for n in range(len(vectors))]
    index = DenseIndex.build(vectors, rows, "hash", "vectors")

    class Given:  # queries that are item vectors with noise, as an encoder would give them
        model, dimensions = "vectors", 32
        asked = vectors[rng.integers(0, 5000, 40)] + 0.1 * rng.standard_normal((40, 32)).astype(np.float32)
        asked /= np.linalg.norm(asked, axis=1, keepdims=True)

        def encode(self, texts: list[str]) -> np.ndarray:
            return self.asked[[int(text) for text in texts]]

    queries = [str(n) for n in range(40)]
    exact = DenseRetriever(index, Given()).search(queries)
    approximate = DenseRetriever(index, Given(), ann_min_items=1000).search(queries)
    assert DenseRetriever(index, Given()).neighbours is None  # 5,000 items: the exact product
    for query in range(len(queries)):
        want = np.argsort(-exact.similarity[query])[:10]
        got = np.argsort(-approximate.similarity[query])[:10]
        assert got.tolist() == want.tolist()
        np.testing.assert_allclose(
            approximate.similarity[query, got], exact.similarity[query, want], rtol=1e-5
        )
        assert np.count_nonzero(approximate.similarity[query]) <= 256
    far = int(np.argmin(exact.similarity[0]))
    assert approximate.similarity[0, far] == 0.0
    approximate.fill(0, [far])
    assert approximate.similarity[0, far] == pytest.approx(exact.similarity[0, far], rel=1e-5)


def test_hybrid_over_the_neighbour_index_ranks_as_over_the_exact_product(loaded: LoadedModel) -> None:
    """Every candidate gets its exact cosine (``fill``), so where the index finds every item the fused
    rankings and scores are those of the exact product."""
    assert loaded.dense is not None
    searched = DenseRetriever(loaded.dense.index, loaded.dense.encoder, ann_min_items=1)
    assert searched.neighbours is not None
    with_index = dataclasses.replace(loaded, dense=searched)
    for fusion in FUSIONS:
        want = loaded.ranker(fusion).rank(QUERIES, 5, "hybrid", num_beams=4)
        got = with_index.ranker(fusion).rank(QUERIES, 5, "hybrid", num_beams=4)
        assert [[r.semantic_id for r in row] for row in got] == [[r.semantic_id for r in row] for row in want]
        for got_row, want_row in zip(got, want, strict=True):
            assert [r.dense_score for r in got_row] == pytest.approx(
                [r.dense_score for r in want_row], rel=1e-5
            )
