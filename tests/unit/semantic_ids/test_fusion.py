"""Linear fusion's gated dense term: the dense neighbours weigh in as the lexical evidence stands back."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from semantic_ids.bundle import FusionParams
from semantic_ids.fusion import Candidates, dense_weight, fuse


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
