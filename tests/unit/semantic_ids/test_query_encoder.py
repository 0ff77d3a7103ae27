"""The service's query encoder: MiniLM's steps run directly, its linear layers laid out for oneDNN, give
the vectors sentence-transformers gives (the item vectors were made that way)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semantic_ids.causal_lm import cpu_runs_fp16_weights
from semantic_ids.llama_body import Fp16WeightLinear, PackedLinear, _packs_weights, pack_linear_layers
from semantic_ids.text_encoder import MINILM, SentenceEncoder, encoder_for, load_minilm

QUERIES = ["a french comedy from the nineties", "films with Keanu Reeves", "une comédie des années 80", "x"]
# Padding, edge spaces, a text past the 256-token limit (truncated alike), more texts than one batch.
TEXTS = [
    *QUERIES,
    "  spaces around  ",
    "a long text " * 200,
    *(f"item {i} " * (i % 7 + 1) for i in range(35)),
]


def test_the_served_query_encoder_gives_sentence_transformers_vectors() -> None:
    served = encoder_for(MINILM, "cpu", fp16_weights=False)
    plain = SentenceEncoder(load_minilm("cpu"), MINILM)
    packed = [m for m in served.body.modules() if isinstance(m, PackedLinear)]
    if _packs_weights(torch.zeros(1)) is PackedLinear:
        assert len(packed) == 24  # 6 layers x (q, k and v joined, attention output, intermediate, output)
    assert served.dimensions == plain.dimensions == 384
    np.testing.assert_allclose(served.encode(TEXTS), plain.encode(TEXTS), rtol=0, atol=1e-6)
    np.testing.assert_allclose(served.encode(QUERIES[:1]), plain.encode(QUERIES[:1]), rtol=0, atol=1e-6)
    assert served.encode([]).shape == (0, 384)


@pytest.mark.skipif(not cpu_runs_fp16_weights(), reason="fbgemm's fp16-weight products need AVX2 and F16C")
def test_fp16_weights_keep_the_vectors_and_their_neighbours() -> None:
    """Where the CPU runs them, the served encoder holds its weights in fp16 (half the bytes a query
    reads); its vectors stay within 2e-4 of the fp32 ones."""
    served = encoder_for(MINILM, "cpu")
    assert sum(isinstance(m, Fp16WeightLinear) for m in served.body.modules()) == 24
    exact = SentenceEncoder(load_minilm("cpu"), MINILM).encode(TEXTS)
    vectors = served.encode(TEXTS)
    assert vectors.dtype == np.float32
    difference = float(np.abs(vectors - exact).max())
    assert 0.0 < difference < 2e-4  # not the fp32 weights, and close to them
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert float((vectors * exact).sum(axis=1).min()) > 0.99999  # each text's cosine with its fp32 vector


def test_packing_keeps_each_layer_s_bias() -> None:
    module = torch.nn.Sequential(torch.nn.Linear(32, 48), torch.nn.GELU(), torch.nn.Linear(48, 8, bias=False))
    x = torch.randn(5, 32)
    with torch.inference_mode():
        before = module(x)
        if pack_linear_layers(module) == 0:
            pytest.skip("oneDNN does not pack fp32 products on this CPU")
        assert isinstance(module[0], PackedLinear) and isinstance(module[2], PackedLinear)
        torch.testing.assert_close(module(x), before, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(not cpu_runs_fp16_weights(), reason="fbgemm's fp16-weight products need AVX2 and F16C")
def test_fp16_weight_layers_keep_each_layer_s_bias() -> None:
    module = torch.nn.Sequential(torch.nn.Linear(32, 48), torch.nn.GELU(), torch.nn.Linear(48, 8, bias=False))
    x = torch.randn(5, 32)
    with torch.inference_mode():
        before = module(x)
        assert pack_linear_layers(module, fp16_weights=True) == 2
        assert isinstance(module[0], Fp16WeightLinear) and isinstance(module[2], Fp16WeightLinear)
        after = module(x)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-2)  # fp16 weights: close, not equal
    assert not torch.equal(after, before)
