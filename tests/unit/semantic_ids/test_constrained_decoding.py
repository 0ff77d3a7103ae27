"""The trie-constrained decoder never writes an ID that does not exist."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from semantic_ids.decoding import ConstrainedDecoder, DecodeMethod, TrieLogitsProcessor, build_prompt
from semantic_ids.ids import IdScheme, SemanticId
from semantic_ids.trie import PrefixTrie
from tests.helpers.tiny_models import make_tiny_base_model

SCHEME = IdScheme((4, 4, 3))
EXISTING = [SemanticId((0, 1, 0)), SemanticId((0, 1, 1)), SemanticId((2, 3, 0)), SemanticId((3, 0, 2))]


@pytest.fixture(scope="module")
def decoder(tmp_path_factory: pytest.TempPathFactory) -> ConstrainedDecoder:
    folder = make_tiny_base_model(tmp_path_factory.mktemp("base"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.add_tokens(SCHEME.all_tokens(), special_tokens=True)
    model = AutoModelForCausalLM.from_pretrained(folder)
    model.resize_token_embeddings(len(tokenizer))
    return ConstrainedDecoder(model.eval(), tokenizer, PrefixTrie(EXISTING, SCHEME))


@pytest.mark.parametrize("method", ["beam", "generate"])
def test_more_beams_than_items_returns_only_existing_ids(
    decoder: ConstrainedDecoder, method: DecodeMethod
) -> None:
    queries = ["a film", "another query, longer than the first"]
    results = decoder.decode(queries, num_beams=12, top_k=12, method=method)
    for candidates in results:
        assert {c.semantic_id for c in candidates} == set(EXISTING)
        assert sum(c.score for c in candidates) == pytest.approx(1.0, abs=1e-4)
        assert [c.score for c in candidates] == sorted((c.score for c in candidates), reverse=True)


def test_top_k_limits_and_orders(decoder: ConstrainedDecoder) -> None:
    (everything,) = decoder.decode(["x"], num_beams=4, top_k=4)
    (candidates,) = decoder.decode(["x"], num_beams=4, top_k=2)
    assert len(everything) == len(EXISTING) and len(candidates) == 2
    scores = [c.score for c in everything]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1]  # best first, not all equal
    assert [c.semantic_id for c in candidates] == [c.semantic_id for c in everything[:2]]


@pytest.mark.parametrize("method", ["beam", "generate"])  # generate: the full vocabulary, beam: code rows
def test_unconstrained_decoding_is_filtered_to_valid_ids(
    decoder: ConstrainedDecoder, method: DecodeMethod
) -> None:
    # A random model writes arbitrary tokens without the trie; the decoder must drop them, not return them.
    results = decoder.decode(["x", "yy"], num_beams=4, top_k=4, constrained=False, method=method)
    assert len(results) == 2
    returned = [c.semantic_id for candidates in results for c in candidates]
    assert set(returned) <= set(EXISTING)
    # Fewer IDs than beams came back, so the free model did write sequences that had to be dropped.
    assert len(returned) < 2 * 4


def test_processor_masks_dead_ends_and_off_trie_prefixes(decoder: ConstrainedDecoder) -> None:
    ids = decoder.token_ids
    prompt = decoder.tokenizer([build_prompt("q")], return_tensors="pt")["input_ids"]
    processor = TrieLogitsProcessor(decoder.trie, ids, prompt.shape[1])
    vocab = len(decoder.tokenizer)

    def allowed_after(codes: list[int]) -> set[int]:
        tokens = [ids.first[level] + code for level, code in enumerate(codes)]
        input_ids = torch.cat([prompt, torch.tensor([tokens], dtype=torch.long)], dim=1)
        out = processor(input_ids, torch.zeros(1, vocab))
        return set(torch.isfinite(out[0]).nonzero().flatten().tolist())

    assert allowed_after([]) == {ids.first[0] + 0, ids.first[0] + 2, ids.first[0] + 3}
    assert allowed_after([0]) == {ids.first[1] + 1}
    assert allowed_after([0, 1]) == {ids.first[2] + 0, ids.first[2] + 1}
    assert allowed_after([0, 1, 1]) == {ids.sem_end}
    assert allowed_after([1]) == set()  # no item starts with code 1: the beam is dead, not free


def test_scores_are_probabilities_under_the_constraint(decoder: ConstrainedDecoder) -> None:
    prompt = decoder.tokenizer([build_prompt("q")], return_tensors="pt")["input_ids"]
    processor = TrieLogitsProcessor(decoder.trie, decoder.token_ids, prompt.shape[1])
    out = processor(prompt, torch.randn(1, len(decoder.tokenizer)))
    assert out[0].exp().sum().item() == pytest.approx(1.0, abs=1e-5)


def test_prefix_trie_rejects_ids_outside_the_scheme(tmp_path: Path) -> None:
    from semantic_ids.ids import InvalidSemanticId

    with pytest.raises(InvalidSemanticId, match="out of range"):
        PrefixTrie([SemanticId((9, 0, 0))], SCHEME)
