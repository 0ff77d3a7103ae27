"""Our beam search gives what `model.generate` with the trie processor gives, and never leaves the trie."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from semantic_ids.beam_search import beam_search, score_codes
from semantic_ids.causal_lm import cpu_runs_fp16_weights, inference_precision, store_linear_weights_fp16
from semantic_ids.decoding import Candidate, ConstrainedDecoder, build_prompt
from semantic_ids.ids import IdScheme, InvalidSemanticId, SemanticId
from semantic_ids.trie import PrefixTrie
from tests.helpers.tiny_catalogue import TINY_IDS, TINY_SCHEME
from tests.helpers.tiny_models import make_tiny_tokenizer, randomise_code_rows
from training.llm.tokens import add_semantic_tokens

# Different lengths, so a batch is left-padded; the search must not let padding shift positions.
QUERIES = ["a film", "another query, much longer than the first one", "x", "Keanu Reeves in the 90s"]
SPARSE_IDS = [SemanticId((0, 1, 0)), SemanticId((0, 1, 1)), SemanticId((2, 3, 0)), SemanticId((3, 0, 2))]
REL = 1e-4


@pytest.fixture(scope="module")
def untied_decoder() -> ConstrainedDecoder:
    tokenizer = make_tiny_tokenizer()
    new_ids = add_semantic_tokens(tokenizer, TINY_SCHEME)
    torch.manual_seed(3)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    randomise_code_rows(model, new_ids, seed=1)
    head, embedding = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    assert head.data_ptr() != embedding.data_ptr() and not torch.allclose(head[new_ids], embedding[new_ids])
    return ConstrainedDecoder(model.eval(), tokenizer, PrefixTrie(TINY_IDS, TINY_SCHEME))


def _assert_same(expected: list[list[Candidate]], actual: list[list[Candidate]], rel: float = REL) -> None:
    assert [[c.semantic_id for c in row] for row in actual] == [
        [c.semantic_id for c in row] for row in expected
    ]
    for want_row, got_row in zip(expected, actual, strict=True):
        assert [c.score for c in got_row] == pytest.approx([c.score for c in want_row], rel=rel)


@pytest.mark.parametrize("beams", [1, 3, 10, 25])  # 25 beams: more than the 20 items
def test_beam_search_matches_generate(decoder: ConstrainedDecoder, beams: int) -> None:
    expected = decoder.decode(QUERIES, num_beams=beams, top_k=beams, method="generate")
    actual = decoder.decode(QUERIES, num_beams=beams, top_k=beams)
    _assert_same(expected, actual)
    assert [len(row) for row in actual] == [min(beams, len(TINY_IDS))] * len(QUERIES)


def test_more_beams_than_items_finds_every_item_once(decoder: ConstrainedDecoder) -> None:
    for candidates in decoder.decode(QUERIES, num_beams=30, top_k=30):
        assert sorted(c.semantic_id for c in candidates) == sorted(TINY_IDS)
        assert sum(c.score for c in candidates) == pytest.approx(1.0, abs=1e-4)


def test_top_k_below_beams_keeps_the_best(decoder: ConstrainedDecoder) -> None:
    many = decoder.decode(QUERIES, num_beams=10, top_k=10)
    few = decoder.decode(QUERIES, num_beams=10, top_k=4)
    _assert_same([row[:4] for row in many], few, rel=0.0)


def test_a_batch_gives_each_query_its_own_answer(decoder: ConstrainedDecoder) -> None:
    alone = [decoder.decode([query], num_beams=5, top_k=5)[0] for query in QUERIES]
    _assert_same(alone, decoder.decode(QUERIES, num_beams=5, top_k=5))


@pytest.mark.parametrize("beams", [1, 3, 10])
def test_untied_head_uses_its_own_code_rows(untied_decoder: ConstrainedDecoder, beams: int) -> None:
    expected = untied_decoder.decode(QUERIES, num_beams=beams, top_k=beams, method="generate")
    _assert_same(expected, untied_decoder.decode(QUERIES, num_beams=beams, top_k=beams))


def test_peft_model_matches_generate(tied: tuple[Any, Any, list[int]]) -> None:
    # peft wraps the head (trainable new rows): the search must use the wrapped, trained head.
    model, tokenizer, new_ids = tied
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj"],
        trainable_token_indices={"embed_tokens": new_ids},
    )
    peft_model = get_peft_model(copy.deepcopy(model), config)
    torch.manual_seed(2)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter) * (0.05 if "lora_" in name else 0.5))
    decoder = ConstrainedDecoder(peft_model.eval(), tokenizer, PrefixTrie(TINY_IDS, TINY_SCHEME))
    expected = decoder.decode(QUERIES, num_beams=6, top_k=6, method="generate")
    _assert_same(expected, decoder.decode(QUERIES, num_beams=6, top_k=6))


def test_bf16_matches_generate(tied: tuple[Any, Any, list[int]]) -> None:
    model, tokenizer, _ = tied
    bf16 = ConstrainedDecoder(
        copy.deepcopy(model).to(torch.bfloat16), tokenizer, PrefixTrie(TINY_IDS, TINY_SCHEME)
    )
    expected = bf16.decode(QUERIES, num_beams=10, top_k=10, method="generate")
    _assert_same(expected, bf16.decode(QUERIES, num_beams=10, top_k=10), rel=1e-3)


@pytest.mark.skipif(not cpu_runs_fp16_weights(), reason="fbgemm's fp16 GEMM needs an x86 CPU with AVX2")
def test_fp16_weights_match_generate_and_keep_the_fp32_ranking(tied: tuple[Any, Any, list[int]]) -> None:
    model, tokenizer, _ = tied
    trie = PrefixTrie(TINY_IDS, TINY_SCHEME)
    stored = copy.deepcopy(model)
    store_linear_weights_fp16(stored.get_decoder())
    assert type(stored.get_decoder().layers[0].mlp.up_proj) is not torch.nn.Linear
    assert type(stored.get_output_embeddings()) is torch.nn.Linear  # the search reads the head's rows
    fp16 = ConstrainedDecoder(stored, tokenizer, trie)
    found = fp16.decode(QUERIES, num_beams=10, top_k=10)
    _assert_same(fp16.decode(QUERIES, num_beams=10, top_k=10, method="generate"), found)
    reference = ConstrainedDecoder(model, tokenizer, trie).decode(QUERIES, num_beams=10, top_k=10)
    assert [row[0].semantic_id for row in found] == [row[0].semantic_id for row in reference]
    assert all(c.semantic_id in trie for row in found for c in row)


def test_the_service_precision_follows_the_cpu() -> None:
    cpu, avx2 = torch.device("cpu"), "flags : fpu sse avx2 f16c"
    fbgemm = "fbgemm" in torch.backends.quantized.supported_engines
    assert inference_precision(cpu, cpuinfo="flags : avx512f amx_bf16 amx_tile avx2 f16c") == "bf16"
    # AVX512-BF16 without AMX: fp16 weights serve 12-14 % more under load than bf16 there (bench/HISTORY.md)
    no_amx = "flags : avx512f avx512_bf16 avx2 f16c"
    assert inference_precision(cpu, cpuinfo=no_amx) == ("fp16-weights" if fbgemm else "fp32")
    assert inference_precision(cpu, cpuinfo=avx2) == ("fp16-weights" if fbgemm else "fp32")
    assert inference_precision(cpu, cpuinfo="flags : fpu sse avx") == "fp32"  # no AVX2: no fbgemm kernel
    assert inference_precision(cpu, "fp32", cpuinfo=avx2) == "fp32"
    assert inference_precision(cpu, "bf16", cpuinfo=avx2) == "bf16"
    assert inference_precision(cpu, "fp16-weights", cpuinfo="flags : fpu") == "fp16-weights"
    with pytest.raises(ValueError, match="CPU only"):
        inference_precision(torch.device("cuda"), "fp16-weights")


def _search(
    decoder: ConstrainedDecoder, trie: PrefixTrie | None, beams: int, early_finish: bool | None = None
) -> tuple[list[Any], list[Any]]:
    batch = decoder.tokenizer([build_prompt(q) for q in QUERIES], return_tensors="pt", padding=True)
    found = beam_search(
        decoder.model,
        batch["input_ids"],
        batch["attention_mask"],
        decoder.token_ids,
        trie,
        num_beams=beams,
        early_finish=early_finish,
    )
    return found.codes.tolist(), found.log_probs.tolist()


def _forward_shapes(model: Any) -> tuple[list[tuple[int, ...]], Any]:
    shapes: list[tuple[int, ...]] = []

    def record(module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        shapes.append(tuple(kwargs["input_ids"].shape))

    return shapes, model.model.register_forward_hook(record, with_kwargs=True)


def test_prompt_runs_once_and_the_full_head_never(decoder: ConstrainedDecoder) -> None:
    model = decoder.model

    def refuse(module: Any, args: Any, output: Any) -> None:
        raise AssertionError("the full-vocabulary head ran")

    shapes, recorder = _forward_shapes(model)
    hooks = [recorder, model.lm_head.register_forward_hook(refuse)]
    try:
        codes, _ = _search(decoder, decoder.trie, 5, early_finish=False)
    finally:
        for hook in hooks:
            hook.remove()
    queries, width = len(QUERIES), 5
    longest = max(len(decoder.tokenizer(build_prompt(q))["input_ids"]) for q in QUERIES)
    # The prompt, then one step per level after the first; [SEM_END] needs no step.
    assert shapes == [(queries, longest), (queries * 4, 1), (queries * width, 1)]
    assert len(codes[0]) == width


def test_the_search_never_waits_for_the_device(decoder: ConstrainedDecoder, monkeypatch: Any) -> None:
    """No host read of a tensor anywhere in the search, transformers' forward included, so on CUDA
    it queues every level without a stall (prompts of equal length: no padding mask to inspect)."""
    prompts = decoder.tokenizer(
        [build_prompt("same length"), build_prompt("other words")], return_tensors="pt"
    )

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("host sync")

    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "cpu", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    found = beam_search(
        decoder.model,
        prompts["input_ids"],
        None,
        decoder.token_ids,
        decoder.trie,
        num_beams=4,
        early_finish=False,  # the GPU default; on the CPU one check per level may stop the search early
    )
    monkeypatch.undo()
    assert found.log_probs.shape == (2, 4) and bool(torch.isfinite(found.log_probs).all())


DISTINCT_FIRST = [SemanticId((0, 1, 0)), SemanticId((1, 2, 1)), SemanticId((2, 0, 2)), SemanticId((3, 3, 0))]


def _both_ways(model: Any, tokenizer: Any, ids: list[SemanticId], beams: int) -> tuple[Any, Any, Any]:
    """(full search, early-finish search, the early search's forward shapes) over ``ids``."""
    trie = PrefixTrie(ids, TINY_SCHEME)
    search = ConstrainedDecoder(model, tokenizer, trie)
    expected = _search(search, trie, beams, early_finish=False)
    shapes, hook = _forward_shapes(model)
    try:
        early = _search(search, trie, beams, early_finish=True)
    finally:
        hook.remove()
    return expected, early, shapes


@pytest.mark.parametrize("ids", [TINY_IDS, SPARSE_IDS, DISTINCT_FIRST])
@pytest.mark.parametrize("beams", [1, 2, 5, 10, 25])
def test_early_finish_changes_nothing_but_the_work(
    tied: tuple[Any, Any, list[int]], ids: list[SemanticId], beams: int
) -> None:
    model, tokenizer, _ = tied
    (codes, log_probs), (early_codes, early_log_probs), shapes = _both_ways(model, tokenizer, ids, beams)
    for query in range(len(QUERIES)):  # the same live beams; dead slots (-inf) may be fewer when early
        live = [(c, s) for c, s in zip(codes[query], log_probs[query], strict=True) if s > -math.inf]
        early = [
            (c, s) for c, s in zip(early_codes[query], early_log_probs[query], strict=True) if s > -math.inf
        ]
        assert [c for c, _ in early] == [c for c, _ in live]
        assert [s for _, s in early] == pytest.approx([s for _, s in live], rel=1e-6)
    assert len(shapes) <= 3  # the prompt and at most the two steps of the full search
    if ids is DISTINCT_FIRST:  # each first code leads to one ID: the prompt's forward is all it takes
        assert len(shapes) == 1


def test_the_last_level_runs_only_the_beams_whose_prefix_branches(tied: tuple[Any, Any, list[int]]) -> None:
    """Of each query's three beams after level 1, only (0, 1) has two last codes; (2, 3) and (3, 0) have
    one, which scores 0 whatever the logits: the last forward runs one row a query, and finds the same."""
    model, tokenizer, _ = tied
    (codes, log_probs), (early_codes, early_log_probs), shapes = _both_ways(model, tokenizer, SPARSE_IDS, 3)
    assert early_codes == codes
    assert early_log_probs == [pytest.approx(row, rel=1e-6) for row in log_probs]
    assert shapes[1:] == [(len(QUERIES) * 3, 1), (len(QUERIES), 1)]


def test_early_finish_fills_in_the_one_remaining_path(tied: tuple[Any, Any, list[int]]) -> None:
    model, tokenizer, _ = tied
    trie = PrefixTrie(SPARSE_IDS, TINY_SCHEME)
    assert trie.rest[0].tolist() == [[-1, -1, -1]]  # the root: four IDs below
    assert trie.rest[1].tolist() == [[-1, -1], [3, 0], [0, 2]]  # nodes (0,), (2,), (3,)
    assert trie.rest[2].tolist() == [[-1], [0], [2]]  # nodes (0, 1), (2, 3), (3, 0)
    # One beam: (2,) or (3,) leads to one ID; the search writes it without a second step.
    codes, _ = _search(ConstrainedDecoder(model, tokenizer, trie), trie, 3, early_finish=True)
    for query_codes in codes:
        assert {SemanticId(tuple(c)) for c in query_codes} <= set(SPARSE_IDS)


def test_every_finite_beam_is_inside_the_trie(tied: tuple[Any, Any, list[int]]) -> None:
    model, tokenizer, _ = tied
    trie = PrefixTrie(SPARSE_IDS, TINY_SCHEME)  # 4 IDs; level 0 allows codes 0, 2, 3 only
    sparse = ConstrainedDecoder(model, tokenizer, trie)
    for beams in (2, 3, 12):
        codes, log_probs = _search(sparse, trie, beams)
        for query_codes, query_scores in zip(codes, log_probs, strict=True):
            finite = [
                SemanticId(tuple(c)) for c, s in zip(query_codes, query_scores, strict=True) if s > -math.inf
            ]
            assert all(semantic_id in trie for semantic_id in finite)
            assert len(finite) == min(beams, len(SPARSE_IDS)) == len(set(finite))
            assert query_scores == sorted(query_scores, reverse=True)
    for candidates in sparse.decode(QUERIES, num_beams=12, top_k=12):  # dead slots are dropped
        assert sorted(c.semantic_id for c in candidates) == sorted(SPARSE_IDS)


def test_unconstrained_search_stays_on_code_tokens(decoder: ConstrainedDecoder) -> None:
    every_code = 4 * 4 * 3
    codes, log_probs = _search(decoder, None, every_code)
    for query_scores in log_probs:  # one code token per level: a distribution over all 48 tuples
        assert sum(math.exp(s) for s in query_scores) == pytest.approx(1.0, abs=1e-4)
    for candidates in decoder.decode(QUERIES, num_beams=10, top_k=10, constrained=False):
        assert all(c.semantic_id in decoder.trie for c in candidates)
    # Teacher forcing without the trie gives the same scores as the unconstrained search.
    batch = decoder.tokenizer([build_prompt(q) for q in QUERIES], return_tensors="pt", padding=True)
    forced = score_codes(
        decoder.model,
        batch["input_ids"],
        batch["attention_mask"],
        decoder.token_ids,
        None,
        torch.tensor(codes),
    )
    assert forced.tolist() == [pytest.approx(row, rel=REL) for row in log_probs]


def test_score_ids_equals_the_beam_search_score(decoder: ConstrainedDecoder) -> None:
    results = decoder.decode(QUERIES, num_beams=10, top_k=10)
    scored = decoder.score_ids(QUERIES, [[c.semantic_id for c in row] for row in results])
    for row, log_probs in zip(results, scored, strict=True):
        assert [math.exp(value) for value in log_probs] == pytest.approx([c.score for c in row], rel=REL)


def test_score_ids_is_normalised_over_the_trie(decoder: ConstrainedDecoder) -> None:
    outside = SemanticId((1, 1, 1))  # fits the scheme, but no item has it
    lists = [TINY_IDS, [outside, TINY_IDS[3]], [], TINY_IDS[:1]]  # ragged, one empty
    scored = decoder.score_ids(QUERIES, lists)
    assert [len(row) for row in scored] == [len(ids) for ids in lists]
    assert sum(math.exp(value) for value in scored[0]) == pytest.approx(1.0, abs=1e-4)
    assert scored[1][0] == -math.inf and scored[1][1] < 0.0
    (alone,) = decoder.score_ids(QUERIES[3:], [TINY_IDS[:1]])
    assert scored[3] == pytest.approx(alone, rel=REL)  # padding in a batch changes nothing
    with pytest.raises(InvalidSemanticId, match="out of range"):
        decoder.score_ids(["q"], [[SemanticId((9, 0, 0))]])


def test_one_level_ids_need_no_step_after_the_prompt(tied: tuple[Any, Any, list[int]]) -> None:
    model, tokenizer, _ = tied
    scheme = IdScheme((4,))  # level 0 of the tiny scheme's tokens, alone
    trie = PrefixTrie([SemanticId((0,)), SemanticId((2,))], scheme)
    one_level = ConstrainedDecoder(model, tokenizer, trie)
    expected = one_level.decode(QUERIES, num_beams=3, top_k=3, method="generate")
    _assert_same(expected, one_level.decode(QUERIES, num_beams=3, top_k=3))


def test_unknown_method_is_refused(decoder: ConstrainedDecoder) -> None:
    with pytest.raises(ValueError, match="unknown decoding method"):
        decoder.decode(["q"], num_beams=2, top_k=2, method="sample")  # type: ignore[arg-type]


@pytest.mark.parametrize("beams", [1, 3])
def test_a_wider_first_level_returns_real_ids_with_their_teacher_forced_scores(
    decoder: ConstrainedDecoder, beams: int
) -> None:
    narrow = decoder.decode(QUERIES, num_beams=beams, top_k=beams)
    decoder.first_level_beams = beams  # as many as beams: the same search
    try:
        _assert_same(narrow, decoder.decode(QUERIES, num_beams=beams, top_k=beams), rel=0.0)
        decoder.first_level_beams = 4  # every first code of the tiny scheme
        wide = decoder.decode(QUERIES, num_beams=beams, top_k=beams)
        decoder.first_level_beams = 64  # more than there are: the same as all of them
        _assert_same(wide, decoder.decode(QUERIES, num_beams=beams, top_k=beams), rel=0.0)
    finally:
        decoder.first_level_beams = None
    scored = decoder.score_ids(QUERIES, [[c.semantic_id for c in row] for row in wide])
    for row, log_probs in zip(wide, scored, strict=True):
        assert len(row) == beams and all(c.semantic_id in decoder.trie for c in row)
        assert [c.score for c in row] == sorted((c.score for c in row), reverse=True)
        assert [math.exp(value) for value in log_probs] == pytest.approx([c.score for c in row], rel=REL)
