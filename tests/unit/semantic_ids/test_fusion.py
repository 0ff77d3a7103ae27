"""Linear fusion's gated dense term: the dense neighbours weigh in as the lexical evidence stands back, or as
a learned gate on the query's signals says."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from semantic_ids.bundle import GATE_FEATURES, DenseGate, FusionParams
from semantic_ids.fusion import Candidates, best_rows, dense_weight, fuse, gate_features, gate_opening, rank


def _candidates(lexical: list[float]) -> Candidates:
    # row 0: the model's pick; row 1: a dense find the model likes less
    return Candidates(
        rows=[0, 1],
        sources=[("model",), ("dense",)],
        log_probs=np.asarray([-1.0, -2.0]),
        lexical=np.asarray(lexical),
        dense=np.asarray([0.1, 0.9]),
    )


def test_the_gated_dense_term_stands_back_as_lexical_evidence_grows() -> None:
    plain = FusionParams(lexical_weight=1.0, dense_depth=2, dense_weight=4.0)
    gated = plain.model_copy(update={"dense_gated": True})
    paraphrase = _candidates([0.0, 0.0])  # nothing matched lexically: the gate is open
    np.testing.assert_allclose(fuse(paraphrase, gated), fuse(paraphrase, plain))
    assert int(np.argmax(fuse(paraphrase, gated))) == 1  # -2 + 3.6 > -1 + 0.4
    named = _candidates([1.0, 0.0])  # the query named row 0 outright: the dense term is off
    assert int(np.argmax(fuse(named, plain))) == 1 and int(np.argmax(fuse(named, gated))) == 0
    np.testing.assert_allclose(fuse(named, gated), [-1.0 + 1.0, -2.0])
    assert dense_weight(_candidates([0.5, 0.25]), gated) == 2.0 and dense_weight(named, plain) == 4.0


def test_a_title_match_closes_the_gate_on_its_own() -> None:
    gated = FusionParams(lexical_weight=1.0, dense_depth=2, dense_weight=4.0, dense_gated=True)
    # a typo'd title: BM25 barely registers (its share of the lexical score is small), the title matches
    typoed = replace(_candidates([0.3, 0.0]), title=np.asarray([0.9, 0.0]))
    assert dense_weight(typoed, gated) == 4.0 * (1.0 - 0.9)
    assert int(np.argmax(fuse(typoed, gated))) == 0
    no_title = replace(typoed, title=np.asarray([0.0, 0.0]))
    assert dense_weight(no_title, gated) == 4.0 * (1.0 - 0.3)


def _gate(**weights: float) -> DenseGate:
    return DenseGate(bias=0.0, weights={name: weights.get(name, 0.0) for name in GATE_FEATURES})


def test_gate_features_read_the_query_from_its_candidates() -> None:
    candidates = Candidates(
        rows=[0, 1, 2],
        sources=[("model",), ("model", "dense"), ("dense",)],
        log_probs=np.asarray([-0.5, -2.0, -np.inf]),
        lexical=np.asarray([0.2, 0.7, 0.0]),
        dense=np.asarray([0.1, 0.4, 0.6]),
        title=np.asarray([0.0, 0.3, 0.0]),
    )
    assert gate_features(candidates) == {
        "lexical_evidence": 0.7,
        "title_match": 0.3,
        "model_top_log_prob": -0.5,
        "model_top_gap": 1.5,
        "dense_top_cosine": 0.6,
        "beam_dense_overlap": 0.5,  # one of the two dense finds is a beam too
    }


def test_a_learned_gate_opens_the_dense_term_as_its_logit_says() -> None:
    gate = _gate(lexical_evidence=-20.0)  # shut where the query matched, half open where it did not
    params = FusionParams(lexical_weight=1.0, dense_depth=2, dense_weight=4.0, dense_gate=gate)
    paraphrase, named = _candidates([0.0, 0.0]), _candidates([1.0, 0.0])
    assert gate_opening(paraphrase, gate) == 0.5 and dense_weight(paraphrase, params) == 2.0
    assert dense_weight(named, params) < 1e-8
    assert int(np.argmax(fuse(paraphrase, params))) == 1  # -2 + 1.8 > -1 + 0.2
    assert int(np.argmax(fuse(named, params))) == 0
    # the gate replaces the lexical-evidence gate, whatever dense_gated says
    both = params.model_copy(update={"dense_gated": True})
    assert dense_weight(paraphrase, both) == 2.0
    assert FusionParams.model_validate_json(params.model_dump_json()) == params  # as the manifest keeps it


def test_a_gate_must_weigh_exactly_the_known_features() -> None:
    with pytest.raises(ValidationError, match="exactly the features"):
        DenseGate(bias=0.0, weights={"lexical_evidence": 1.0})
    with pytest.raises(ValidationError, match="exactly the features"):
        DenseGate(bias=0.0, weights={**_gate().weights, "query_length": 1.0})


def test_rank_puts_attributes_met_then_decisive_matches_before_the_fused_score() -> None:
    candidates = Candidates(
        rows=[0, 1, 2],
        sources=[("model",), ("lexical",), ("lexical",)],
        log_probs=np.array([-0.1, -20.0, -25.0]),  # the model prefers row 0 by far
        lexical=np.array([0.0, 0.6, 0.6]),
        satisfied=np.array([1.0, 1.0, 0.5]),
        decisive=np.array([0.0, 1.0, 1.0]),
    )
    order, fused = rank(candidates, FusionParams())
    assert order.tolist() == [1, 0, 2]  # decisive within the attribute tier; a missed attribute last
    assert int(np.argmax(fused)) == 0  # the fused score alone would have kept the model's choice
    order, _ = rank(candidates, FusionParams(decisive_evidence=None, attributes=False))
    assert order.tolist() == np.argsort(-fused, kind="stable").tolist()


@given(
    st.lists(st.sampled_from([-np.inf, 0.0, 0.25, 0.5, 1.0, 3.0]), min_size=1, max_size=60),
    st.integers(min_value=0, max_value=70),
)
def test_best_rows_are_the_stable_sort_s_first_rows(values: list[float], n: int) -> None:
    """Many ties and -inf: the same rows in the same order as a stable sort of every row."""
    scores = np.asarray(values, dtype=np.float32)
    assert best_rows(scores, n) == [int(r) for r in np.argsort(-scores, kind="stable")[:n]]
