"""The service's query encoder: MiniLM's steps run directly, its linear layers laid out for oneDNN, give
the vectors sentence-transformers gives (the item vectors were made that way)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semantic_ids.llama_body import PackedLinear, _packs_weights, pack_linear_layers
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
    served = encoder_for(MINILM, "cpu")
    plain = SentenceEncoder(load_minilm("cpu"), MINILM)
    packed = [m for m in served.body.modules() if isinstance(m, PackedLinear)]
    if _packs_weights(torch.zeros(1)) is PackedLinear:
        assert len(packed) == 24  # 6 layers x (q, k and v joined, attention output, intermediate, output)
    assert served.dimensions == plain.dimensions == 384
    np.testing.assert_allclose(served.encode(TEXTS), plain.encode(TEXTS), rtol=0, atol=1e-6)
    np.testing.assert_allclose(served.encode(QUERIES[:1]), plain.encode(QUERIES[:1]), rtol=0, atol=1e-6)
    assert served.encode([]).shape == (0, 384)


def test_packing_keeps_each_layer_s_bias() -> None:
    module = torch.nn.Sequential(torch.nn.Linear(32, 48), torch.nn.GELU(), torch.nn.Linear(48, 8, bias=False))
    x = torch.randn(5, 32)
    with torch.inference_mode():
        before = module(x)
        if pack_linear_layers(module) == 0:
            pytest.skip("oneDNN does not pack fp32 products on this CPU")
        assert isinstance(module[0], PackedLinear) and isinstance(module[2], PackedLinear)
        torch.testing.assert_close(module(x), before, rtol=1e-6, atol=1e-6)
