"""The search's own Llama forward (``LlamaBody``) gives what transformers' forward gives: the same hidden
states over padded prompts and cached steps, and so the same IDs, order and scores in every search."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from transformers import DynamicCache, GPT2Config, GPT2LMHeadModel

from semantic_ids.causal_lm import cpu_runs_fp16_weights, store_linear_weights_fp16
from semantic_ids.decoding import Candidate, ConstrainedDecoder, build_prompt
from semantic_ids.llama_body import (
    LlamaBody,
    PackedLinear,
    _one_token_attention,
    _packs_weights,
    _rms_norm,
    _Shape,
    unsupported_llama_config,
)
from semantic_ids.search_steps import prompt_positions, rows_mask
from semantic_ids.trie import PrefixTrie
from tests.helpers.tiny_catalogue import TINY_IDS, TINY_SCHEME

QUERIES = ["a film", "another query, much longer than the first one", "x", "Keanu Reeves in the 90s"]
REL = 1e-4


@pytest.fixture(scope="module")
def model(tied: tuple[Any, Any, list[int]]) -> Any:
    return tied[0]


@pytest.fixture(scope="module")
def body(model: Any) -> LlamaBody:
    found = LlamaBody.of(model)
    assert found is not None
    return found


def _prompts(tokenizer: Any, queries: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    batch = tokenizer([build_prompt(q) for q in queries], return_tensors="pt", padding=True)
    return batch["input_ids"], batch["attention_mask"]


def test_hidden_states_match_transformers_over_padding_and_cached_steps(
    model: Any, body: LlamaBody, tied: tuple[Any, Any, list[int]]
) -> None:
    tokenizer = tied[1]
    input_ids, mask = _prompts(tokenizer, QUERIES)
    assert not bool(mask.all())  # left padding in the batch
    positions = prompt_positions(input_ids, mask)
    cache = DynamicCache(config=model.config)
    session = body.session()
    with torch.inference_mode():
        expected = model.model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True
        ).last_hidden_state
        actual = session.forward(input_ids, mask, positions)
        real = mask.bool()
        torch.testing.assert_close(actual[real], expected[real], rtol=1e-5, atol=1e-5)
        # Two beams per query, one of them twice: the reorder copies rows, as the search's does.
        rows = torch.tensor([0, 0, 1, 2, 3, 3, 1])
        cache.batch_select_indices(rows)
        session.cache.batch_select_indices(rows)
        for new in (1, 3):  # a search's step, then teacher forcing of several codes at once
            tokens = torch.randint(5, 40, (len(rows), new))
            step_mask = rows_mask(mask, rows, cache.get_seq_length() - mask.shape[1] + new)
            step_positions = positions[rows, -1:] + cache.get_seq_length() - mask.shape[1] + 1
            step_positions = step_positions + torch.arange(new)
            expected = model.model(
                input_ids=tokens,
                attention_mask=step_mask,
                position_ids=step_positions,
                cache=cache,
                use_cache=True,
            ).last_hidden_state
            actual = session.forward(tokens, step_mask, step_positions)
            torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def _same(expected: list[list[Candidate]], actual: list[list[Candidate]]) -> None:
    assert [[c.semantic_id for c in row] for row in actual] == [
        [c.semantic_id for c in row] for row in expected
    ]
    for want, got in zip(expected, actual, strict=True):
        assert [c.score for c in got] == pytest.approx([c.score for c in want], rel=REL)


@pytest.mark.parametrize("beams", [1, 4, 10, 25])
def test_searches_through_the_body_find_what_transformers_finds(
    decoder: ConstrainedDecoder, body: LlamaBody, beams: int
) -> None:
    fast = ConstrainedDecoder(decoder.model, decoder.tokenizer, decoder.trie, body=body)
    _same(
        decoder.decode(QUERIES, num_beams=beams, top_k=beams),
        fast.decode(QUERIES, num_beams=beams, top_k=beams),
    )
    for query in QUERIES:  # unpadded: no mask at all
        _same(
            decoder.decode([query], num_beams=beams, top_k=5), fast.decode([query], num_beams=beams, top_k=5)
        )


def test_forced_and_teacher_forced_scores_through_the_body_match(
    decoder: ConstrainedDecoder, body: LlamaBody
) -> None:
    fast = ConstrainedDecoder(decoder.model, decoder.tokenizer, decoder.trie, body=body)
    candidates = [TINY_IDS[i : i + 6] for i in range(len(QUERIES))]
    for want, got in zip(
        decoder.score_ids(QUERIES, candidates), fast.score_ids(QUERIES, candidates), strict=True
    ):
        assert got == pytest.approx(want, rel=REL)
    forced = torch.tensor([[list(sid.codes) for sid in ids] for ids in candidates])
    want_beams, want_forced = decoder.decode_and_score(QUERIES, forced, num_beams=4, top_k=4)
    got_beams, got_forced = fast.decode_and_score(QUERIES, forced, num_beams=4, top_k=4)
    _same(want_beams, got_beams)
    for want, got in zip(want_forced, got_forced, strict=True):
        assert got == pytest.approx(want, rel=REL)


def test_the_model_itself_still_generates_the_same_after_the_body_is_built(
    tied: tuple[Any, Any, list[int]],
) -> None:
    model, tokenizer, _ = tied
    fresh = copy.deepcopy(model)
    reference = ConstrainedDecoder(fresh, tokenizer, PrefixTrie(TINY_IDS, TINY_SCHEME))
    before = reference.decode(QUERIES, num_beams=4, top_k=4, method="generate")
    body = LlamaBody.of(fresh)
    assert body is not None
    attention = fresh.model.layers[0].self_attn
    # The model's q/k/v weights are now views of the body's joined weight: held once.
    assert (
        attention.k_proj.weight.untyped_storage().data_ptr()
        == attention.q_proj.weight.untyped_storage().data_ptr()
    )
    _same(before, reference.decode(QUERIES, num_beams=4, top_k=4, method="generate"))


def test_models_it_does_not_cover_keep_transformers_forward(tied: tuple[Any, Any, list[int]]) -> None:
    model = tied[0]
    training = copy.deepcopy(model).train()
    assert LlamaBody.of(training) is None  # weights that change: never a stale copy
    quantised = copy.deepcopy(model)
    store_linear_weights_fp16(quantised.get_decoder())
    assert LlamaBody.of(quantised) is None
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50)).eval()
    assert LlamaBody.of(gpt2) is None


@pytest.mark.parametrize("rows", [1, 3, 18])
def test_one_token_attention_in_plain_products_gives_what_the_fused_kernel_gives(rows: int) -> None:
    """fp32 one-token attention runs as two products and a softmax: what SDPA gives, with a padding mask
    (a row that sees only part of its keys) and without."""
    shape = _Shape(heads=6, kv_heads=2, head_dim=16, eps=1e-5)
    generator = torch.Generator().manual_seed(rows)
    query = torch.randn(rows, shape.heads, shape.head_dim, generator=generator)
    keys = torch.randn(rows, shape.kv_heads, 9, shape.head_dim, generator=generator)
    values = torch.randn(rows, shape.kv_heads, 9, shape.head_dim, generator=generator)
    attend = torch.ones(rows, 1, 1, 9, dtype=torch.bool)
    attend[0, ..., :4] = False  # the first row's prompt was left-padded by four tokens
    for mask in (None, attend):
        expected = torch.nn.functional.scaled_dot_product_attention(
            query.unsqueeze(2), keys, values, attn_mask=mask, scale=shape.head_dim**-0.5, enable_gqa=True
        ).transpose(1, 2)  # (rows, 1, heads, D)
        actual = _one_token_attention(query, keys, values, mask, shape)
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def test_fp32_rms_norm_is_transformers_formula() -> None:
    x, weight = torch.randn(5, 3, 64), torch.randn(64)
    expected = weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))
    torch.testing.assert_close(_rms_norm(x, weight, 1e-5), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_weights_give_what_linear_gives(dtype: torch.dtype) -> None:
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch has no oneDNN")
    linear = torch.nn.Linear(96, 80, bias=False).to(dtype)
    if _packs_weights(linear.weight) is not PackedLinear:
        pytest.skip(f"oneDNN does not run {dtype} products on this CPU: the body keeps plain linear layers")
    x = torch.randn(4, 7, 96, dtype=dtype)
    with torch.inference_mode():
        torch.testing.assert_close(PackedLinear(linear)(x), linear(x), rtol=0, atol=0)


def test_fp16_weight_body_finds_what_the_fp16_weight_model_finds(tied: tuple[Any, Any, list[int]]) -> None:
    """On AVX2 CPUs the service stores the linear weights in fp16 (``precision="fp16-weights"``): the body
    built for that gives the IDs, order and scores that transformers' forward over fp16-stored layers
    gives, and the model keeps generating afterwards."""
    if not cpu_runs_fp16_weights():
        pytest.skip("fbgemm's fp16-weight kernels need an x86 CPU with AVX2 and F16C")
    model, tokenizer, _ = tied
    trie = PrefixTrie(TINY_IDS, TINY_SCHEME)
    reference_model = copy.deepcopy(model)
    store_linear_weights_fp16(reference_model.get_decoder())
    reference = ConstrainedDecoder(reference_model, tokenizer, trie)
    served = copy.deepcopy(model)
    body = LlamaBody.of(served, fp16_weights=True)  # as the service loads it: the body, then the model
    store_linear_weights_fp16(served.get_decoder())
    assert body is not None and body.weights == "fp16 (fbgemm)"
    fast = ConstrainedDecoder(served, tokenizer, trie, body=body)
    for beams in (1, 4, 10):
        _same(
            reference.decode(QUERIES, num_beams=beams, top_k=beams),
            fast.decode(QUERIES, num_beams=beams, top_k=beams),
        )
    candidates = [TINY_IDS[i : i + 6] for i in range(len(QUERIES))]
    for want, got in zip(
        reference.score_ids(QUERIES, candidates), fast.score_ids(QUERIES, candidates), strict=True
    ):
        assert got == pytest.approx(want, rel=REL)
    _same(
        reference.decode(QUERIES, num_beams=4, top_k=4, method="generate"),
        fast.decode(QUERIES, num_beams=4, top_k=4, method="generate"),
    )
    with pytest.raises(ValueError, match="fp32 model on a CPU"):
        LlamaBody.of(copy.deepcopy(model).to(torch.bfloat16), fp16_weights=True)


def test_configs_the_body_does_not_cover_are_named() -> None:
    """A config read from a file (the service's path) is checked as a loaded model's is: another rotary
    (old or new spelling), biases or architecture are refused with what differs."""
    plain = {"model_type": "llama", "rope_parameters": {"rope_type": "default", "rope_theta": 1e4}}
    assert unsupported_llama_config(plain) is None
    assert (
        unsupported_llama_config({**plain, "rope_parameters": {"rope_type": "llama3"}})
        == "rope_type 'llama3'"
    )
    old_scaling = {"model_type": "llama", "rope_scaling": {"type": "linear", "factor": 2.0}}
    assert unsupported_llama_config(old_scaling) == "rope_type 'linear'"
    assert unsupported_llama_config({**plain, "attention_bias": True, "model_type": "mistral"}) == (
        "model_type 'mistral', attention_bias True"
    )
