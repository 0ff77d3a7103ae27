"""ID assignment: every item gets a unique ID, deterministically, even when RQ-VAE codes collide."""

from __future__ import annotations

import itertools
import json
import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from semantic_ids.ids import IdScheme, SemanticId
from semantic_ids.rqvae import SemanticRQVAE, load_rqvae
from semantic_ids.trie import PrefixTrie
from tests.helpers.rqvae_data import TINY, clustered_embeddings
from training.data.items import CatalogueItem
from training.ids.assign import (
    IdAssignment,
    assign_ids,
    disambiguation_codes,
    prefix_cosines,
    write_id_outputs,
)
from training.ids.code_stats import collision_rate, level_stats
from training.ids.train_rqvae import encode_items, train_rqvae
from training.run_layout import RunLayout


@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=60),
    st.randoms(use_true_random=False),
)
@settings(max_examples=60)
def test_disambiguation_makes_ids_unique_and_is_order_independent(
    codes_list: list[tuple[int, int]], rng: random.Random
) -> None:
    codes = np.array(codes_list, dtype=np.int64)
    item_ids = [f"item{index:03d}" for index in range(len(codes))]
    distances = np.array([(index * 7919) % 13 / 13 for index in range(len(codes))])
    final = disambiguation_codes(codes, distances, item_ids)
    full = np.concatenate([codes, final[:, None]], axis=1)
    assert len({tuple(row) for row in full}) == len(codes)
    # Within each collision group the codes are exactly 0..size-1.
    for key, group in itertools.groupby(
        sorted(range(len(codes)), key=lambda i: tuple(codes[i])), key=lambda i: tuple(codes[i])
    ):
        members = list(group)
        assert sorted(final[members]) == list(range(len(members))), key
    # Shuffling the input rows does not change any item's ID.
    order = list(range(len(codes)))
    rng.shuffle(order)
    shuffled = disambiguation_codes(codes[order], distances[order], [item_ids[i] for i in order])
    assert dict(zip([item_ids[i] for i in order], shuffled, strict=True)) == dict(
        zip(item_ids, final, strict=True)
    )


def test_closest_to_its_codeword_gets_zero_then_item_id_breaks_ties() -> None:
    codes = np.array([[1, 1], [1, 1], [1, 1], [0, 2]])
    final = disambiguation_codes(codes, np.array([0.5, 0.1, 0.5, 0.9]), ["c", "b", "a", "z"])
    assert final.tolist() == [2, 0, 1, 0]


def test_prefix_cosines_match_brute_force() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(30, 5))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    codes = rng.integers(0, 3, size=(30, 2))
    result = prefix_cosines(vectors, codes)
    cosine = vectors @ vectors.T
    pairs = [(i, j) for i in range(30) for j in range(30) if i != j]
    assert result["all_pairs"] == pytest.approx(np.mean([cosine[i, j] for i, j in pairs]))
    same = [cosine[i, j] for i, j in pairs if codes[i, 0] == codes[j, 0]]
    assert result["same_prefix_1"] == pytest.approx(np.mean(same))


@pytest.mark.parametrize("block_rows", [1, 4, 7, 1000])
def test_prefix_cosines_in_blocks_match_brute_force(block_rows: int) -> None:
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(40, 6))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    codes = rng.integers(0, 3, size=(40, 2))
    result = prefix_cosines(vectors, codes, block_rows=block_rows)
    cosine = vectors @ vectors.T
    pairs = [(i, j) for i in range(40) for j in range(40) if i != j]
    assert result["all_pairs"] == pytest.approx(np.mean([cosine[i, j] for i, j in pairs]))
    for length in (1, 2):
        same = [cosine[i, j] for i, j in pairs if (codes[i, :length] == codes[j, :length]).all()]
        assert result[f"same_prefix_{length}"] == pytest.approx(np.mean(same))


def test_code_stats() -> None:
    codes = np.array([[0, 1], [0, 1], [1, 1], [3, 0]])
    assert collision_rate(codes) == 0.5
    level0, level1 = level_stats(codes, codebook_size=4)
    assert level0["used_codes"] == 3 and level0["usage"] == 0.75
    assert level1["perplexity"] == pytest.approx(np.exp(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25))))
    assert level_stats(np.array([[0], [1], [2], [3]]), 4)[0]["perplexity"] == pytest.approx(4.0)


Assigned = tuple[list[CatalogueItem], np.ndarray, SemanticRQVAE, IdAssignment, Path]


@pytest.fixture(scope="module")
def assigned(tmp_path_factory: pytest.TempPathFactory) -> Assigned:
    torch.set_num_threads(1)
    embeddings, _ = clustered_embeddings(per_cluster=40)
    # Two levels of 8 codes for 320 items: collisions are certain, so disambiguation must work.
    model, _ = train_rqvae(embeddings, TINY, show_progress=False)
    items = [
        CatalogueItem(f"tt{index:04d}", f"Film {index}", {"year": 2000 + index % 20})
        for index in range(len(embeddings))
    ]
    assignment = assign_ids(items, embeddings, model, TINY)
    run_dir = tmp_path_factory.mktemp("run")
    write_id_outputs(RunLayout(run_dir), items, embeddings, model, TINY, assignment)
    return items, embeddings, model, assignment, run_dir


def test_ids_are_unique_and_fit_the_reported_scheme(assigned: Assigned) -> None:
    items, _, _, assignment, _ = assigned
    report = assignment.report
    assert report["collision_rate"] > 0.5 and report["largest_collision_group"] > 1
    sizes = report["codebook_sizes"]
    assert sizes[:-1] == [TINY.codebook_size] * TINY.levels and sizes[-1] == report["largest_collision_group"]
    ids = [SemanticId(tuple(int(code) for code in row)) for row in assignment.semantic_ids]
    assert len(set(ids)) == len(items)
    trie = PrefixTrie(ids, IdScheme(tuple(sizes)))  # validates every ID against the scheme
    assert len(trie) == len(items)


def test_assignment_is_deterministic(assigned: Assigned) -> None:
    items, embeddings, model, assignment, _ = assigned
    again_model, _ = train_rqvae(embeddings, TINY, show_progress=False)
    again = assign_ids(items, embeddings, again_model, TINY)
    assert np.array_equal(again.semantic_ids, assignment.semantic_ids)
    assert np.array_equal(assign_ids(items, embeddings, model, TINY).semantic_ids, assignment.semantic_ids)


def test_outputs_follow_the_contract(assigned: Assigned) -> None:
    items, embeddings, _, assignment, run_dir = assigned
    layout = RunLayout(run_dir)
    rows = [json.loads(line) for line in layout.items_with_ids.read_text().splitlines()]
    assert [row["item_id"] for row in rows] == [item.item_id for item in items]
    assert set(rows[0]) == {"item_id", "title", "fields", "semantic_id"}
    assert rows[0]["fields"] == {"year": 2000}
    assert [row["semantic_id"] for row in rows] == assignment.semantic_ids.tolist()
    report = json.loads(layout.id_report.read_text())
    assert report["rq_levels"] == TINY.levels and report["codebook_sizes"] == assignment.codebook_sizes
    assert {"collision_rate", "largest_collision_group", "levels", "semantic_check"} <= set(report)
    saved = np.load(layout.embeddings)
    assert saved.dtype == np.float32 and np.array_equal(saved, embeddings)
    loaded, config = load_rqvae(layout.rqvae)
    assert config == TINY
    assert np.array_equal(encode_items(loaded, embeddings)["codes"], assignment.semantic_ids[:, :-1])
    assert layout.usage_plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(run_dir.glob(".*"))  # no temporary files left behind


def test_a_failed_codebook_picture_loses_no_ids(
    assigned: Assigned, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    items, embeddings, model, assignment, _ = assigned

    def broken(*_args: object) -> None:
        raise RuntimeError("no fonts on this machine")

    monkeypatch.setattr("training.ids.assign.plot_codebook_usage", broken)
    layout = RunLayout(tmp_path)
    with caplog.at_level(logging.WARNING, logger="training.io"):
        write_id_outputs(layout, items, embeddings, model, TINY, assignment)
    assert layout.items_with_ids.is_file() and layout.id_report.is_file()
    assert not layout.usage_plot.exists() and "no fonts on this machine" in caplog.text
