"""Fixtures of the search tests: a tiny random Llama with the tiny scheme's code tokens, and its decoder."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from semantic_ids.causal_lm import resize_for_tokens
from semantic_ids.decoding import ConstrainedDecoder
from semantic_ids.trie import PrefixTrie
from tests.helpers.tiny_catalogue import TINY_IDS, TINY_SCHEME
from tests.helpers.tiny_models import make_tiny_base_model, randomise_code_rows
from training.llm.tokens import add_semantic_tokens


@pytest.fixture(scope="module")
def tied(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, list[int]]:
    folder = make_tiny_base_model(tmp_path_factory.mktemp("base"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    new_ids = add_semantic_tokens(tokenizer, TINY_SCHEME)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    resize_for_tokens(model, tokenizer)
    randomise_code_rows(model, new_ids, seed=0)
    return model.eval(), tokenizer, new_ids


@pytest.fixture(scope="module")
def decoder(tied: tuple[Any, Any, list[int]]) -> ConstrainedDecoder:
    model, tokenizer, _ = tied
    return ConstrainedDecoder(model, tokenizer, PrefixTrie(TINY_IDS, TINY_SCHEME))
