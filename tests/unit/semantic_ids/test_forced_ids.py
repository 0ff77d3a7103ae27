"""Teacher-forced scores inside the beam search (``beam_search(forced=...)``, ``decode_and_score``): the
beams and the scores a pass of their own gives, from one prompt pass and the search's own forwards."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from semantic_ids.beam_search import beam_search, score_codes
from semantic_ids.decoding import ConstrainedDecoder, build_prompt
from semantic_ids.forced_ids import Estimate
from semantic_ids.ids import IdScheme, SemanticId
from semantic_ids.trie import PrefixTrie
from tests.helpers.tiny_catalogue import TINY_IDS, TINY_SCHEME
from tests.unit.semantic_ids.test_beam_search import QUERIES, REL, _assert_same


def _codes(lists: list[list[SemanticId]]) -> torch.Tensor:
    """(queries, N, levels) codes, short lists padded by repeating their last ID."""
    count = max(len(ids) for ids in lists)
    return torch.tensor([[sid.codes for sid in ids + ids[-1:] * (count - len(ids))] for ids in lists])


FORCED = [
    TINY_IDS,  # every item: most share a prefix with a beam or with each other
    [TINY_IDS[7], SemanticId((1, 1, 1)), TINY_IDS[7]],  # a duplicate, and an ID outside the trie
    TINY_IDS[12:13],
    TINY_IDS[::-3],
]


@pytest.mark.parametrize("beams", [1, 4, 25])
def test_decode_and_score_gives_the_beams_and_the_teacher_forced_scores(
    decoder: ConstrainedDecoder, beams: int
) -> None:
    """One prompt pass gives what decode and score_ids give in two."""
    forced = _codes(FORCED)
    found, scored = decoder.decode_and_score(QUERIES, forced, num_beams=beams, top_k=beams)
    _assert_same(decoder.decode(QUERIES, num_beams=beams, top_k=beams), found)
    padded = [[SemanticId(tuple(codes)) for codes in row] for row in forced.tolist()]
    expected = decoder.score_ids(QUERIES, padded)
    for want, got in zip(expected, scored, strict=True):
        assert got == pytest.approx(want, rel=REL)
    assert scored[1][1] == -math.inf and math.isfinite(scored[1][0]) and scored[1][0] == scored[1][2]
    by_id = dict(zip(TINY_IDS, scored[0], strict=True))  # the first query forced every item
    assert [c.score for c in found[0]] == pytest.approx(
        [math.exp(by_id[c.semantic_id]) for c in found[0]], rel=REL
    )


def _step_rows(decoder: ConstrainedDecoder, forced: torch.Tensor, beams: int) -> tuple[list[int], Any]:
    model, shapes = decoder.model, []

    def record(module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        shapes.append(kwargs["input_ids"].shape[0])

    hook = model.model.register_forward_hook(record, with_kwargs=True)
    try:
        found, _ = decoder.decode_and_score(QUERIES[:1], forced, num_beams=beams, top_k=beams)
    finally:
        hook.remove()
    return shapes, found[0]


def _needed_prefixes(ids: list[SemanticId], length: int) -> set[tuple[int, ...]]:
    """Prefixes of ``length`` codes after which an ID's path through the trie still branches."""
    trie = PrefixTrie(ids, TINY_SCHEME)
    levels = TINY_SCHEME.levels
    return {
        sid.codes[:length]
        for sid in ids
        if any(len(trie.allowed_codes(sid.codes[:level])) > 1 for level in range(length, levels))
    }


def test_forced_ids_ride_in_the_searchs_own_forwards(decoder: ConstrainedDecoder) -> None:
    """No second prompt pass and no extra forward: each step runs the beams plus the prefixes the
    forced IDs need and the beams lack, each once, and none past the last level that branches."""
    forced = _codes([TINY_IDS])
    rows, (best,) = _step_rows(decoder, forced, beams=1)
    needed = [_needed_prefixes(TINY_IDS, length) - {best.semantic_id.codes[:length]} for length in (1, 2)]
    assert rows == [1, 1 + len(needed[0]), 1 + len(needed[1])]
    assert len(needed[1]) < len({sid.codes[:2] for sid in TINY_IDS})  # some paths stop branching early
    plain, _ = _step_rows(decoder, forced[:, :0], beams=25)  # beams cover every prefix: nothing to add
    assert _step_rows(decoder, forced, beams=25)[0] == plain


def test_forced_scores_without_the_trie_match_score_codes(decoder: ConstrainedDecoder) -> None:
    batch = decoder.tokenizer([build_prompt(q) for q in QUERIES], return_tensors="pt", padding=True)
    outside = _codes([[SemanticId((1, 1, 1)), SemanticId((3, 3, 2))] for _ in QUERIES])
    args = (decoder.model, batch["input_ids"], batch["attention_mask"], decoder.token_ids, None)
    found = beam_search(*args, num_beams=3, forced=outside)
    assert found.forced_log_probs is not None
    assert found.forced_log_probs.tolist() == [
        pytest.approx(row, rel=REL) for row in score_codes(*args, outside).tolist()
    ]
    assert bool(torch.isfinite(found.forced_log_probs).all())  # no trie: nothing is outside it


def test_one_level_ids_are_scored_from_the_prompt_alone(tied: tuple[Any, Any, list[int]]) -> None:
    model, tokenizer, _ = tied
    one_level = ConstrainedDecoder(
        model, tokenizer, PrefixTrie([SemanticId((0,)), SemanticId((2,))], IdScheme((4,)))
    )
    forced = torch.tensor([[[0], [2], [1]]] * len(QUERIES))
    _, scored = one_level.decode_and_score(QUERIES, forced, num_beams=2, top_k=2)
    expected = one_level.score_ids(QUERIES, [[SemanticId((c,)) for c in (0, 2, 1)]] * len(QUERIES))
    assert scored == [pytest.approx(row, rel=REL) for row in expected]


def test_an_estimate_stands_in_for_ids_far_behind_on_their_first_code(decoder: ConstrainedDecoder) -> None:
    """IDs whose first code is far below their query's best run no later rows: their score is the first
    code's plus ``per_level`` for each later level up to the last where their path branches. The others,
    and the beams, are scored exactly as without it."""
    forced = _codes(FORCED)
    beams, exact = decoder.decode_and_score(QUERIES, forced, num_beams=4, top_k=4)
    _, first_only = decoder.decode_and_score(
        QUERIES, forced, num_beams=4, top_k=4, estimate=Estimate(margin=0.5, per_level=0.0)
    )
    found, estimated = decoder.decode_and_score(
        QUERIES, forced, num_beams=4, top_k=4, estimate=Estimate(margin=0.5, per_level=-6.0)
    )
    _assert_same(beams, found)
    stood_in = 0
    for want, first, got in zip(exact, first_only, estimated, strict=True):
        for w, f, g in zip(want, first, got, strict=True):
            if g == pytest.approx(w, rel=REL):
                assert f == pytest.approx(w, rel=REL)
                continue
            stood_in += 1
            assert f >= w - 1e-6  # the first code alone: later levels only lower a log-probability
            assert round(f - g, 4) in (6.0, 12.0)  # -6 for each later level that still branches
    assert stood_in > 0
    with_estimate = _rows_of(decoder, forced[:1], estimate=Estimate(margin=0.5, per_level=-6.0))
    assert sum(with_estimate[1:]) < sum(_rows_of(decoder, forced[:1])[1:])  # the prompt's row aside


def _rows_of(decoder: ConstrainedDecoder, forced: torch.Tensor, **kwargs: Any) -> list[int]:
    shapes: list[int] = []

    def record(module: Any, args: Any, kw: dict[str, Any], output: Any) -> None:
        shapes.append(kw["input_ids"].shape[0])

    hook = decoder.model.model.register_forward_hook(record, with_kwargs=True)
    try:
        decoder.decode_and_score(QUERIES[:1], forced, num_beams=1, top_k=1, **kwargs)
    finally:
        hook.remove()
    return shapes
