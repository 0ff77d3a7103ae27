"""The service's query encoder: MiniLM with its linear layers laid out for oneDNN gives the vectors the
plain model gives (the item vectors were made by the plain model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semantic_ids.llama_body import PackedLinear, _packs_weights, pack_linear_layers
from semantic_ids.text_encoder import MINILM, SentenceEncoder, encoder_for, load_minilm

QUERIES = ["a french comedy from the nineties", "films with Keanu Reeves", "une comédie des années 80", "x"]


def test_the_packed_query_encoder_gives_the_plain_model_s_vectors() -> None:
    served = encoder_for(MINILM, "cpu")
    plain = SentenceEncoder(load_minilm("cpu"), MINILM)
    packed = [m for m in served._model.modules() if isinstance(m, PackedLinear)]
    if _packs_weights(torch.zeros(1)) is PackedLinear:
        assert len(packed) == 37  # 6 layers x (q, k, v, output, intermediate, output) + the pooler
    np.testing.assert_allclose(served.encode(QUERIES), plain.encode(QUERIES), rtol=0, atol=1e-6)
    np.testing.assert_allclose(served.encode(QUERIES[:1]), plain.encode(QUERIES[:1]), rtol=0, atol=1e-6)


def test_packing_keeps_each_layer_s_bias() -> None:
    module = torch.nn.Sequential(torch.nn.Linear(32, 48), torch.nn.GELU(), torch.nn.Linear(48, 8, bias=False))
    x = torch.randn(5, 32)
    with torch.inference_mode():
        before = module(x)
        if pack_linear_layers(module) == 0:
            pytest.skip("oneDNN does not pack fp32 products on this CPU")
        assert isinstance(module[0], PackedLinear) and isinstance(module[2], PackedLinear)
        torch.testing.assert_close(module(x), before, rtol=1e-6, atol=1e-6)
