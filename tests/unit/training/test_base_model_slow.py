"""The packaged SmolLM2 GGUF becomes a safetensors base-model folder (real model: marked slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from training.llm.base_model import SMOLLM2_NAME, prepare_base_model


@pytest.mark.slow
def test_smollm2_gguf_is_prepared_once_as_tied_llama(tmp_path: Path) -> None:
    prepared = prepare_base_model(tmp_path)
    config = json.loads((prepared.folder / "config.json").read_text())
    assert prepared.name == SMOLLM2_NAME and not prepared.reused
    assert config["architectures"] == ["LlamaForCausalLM"] and config["vocab_size"] == 49152
    assert config["tie_word_embeddings"] is True
    assert (prepared.folder / "tokenizer.json").is_file()
    assert prepare_base_model(tmp_path).reused


@pytest.mark.slow
def test_the_served_tokenizer_reads_smollm2_with_semantic_tokens_as_transformers_does(tmp_path: Path) -> None:
    """The service tokenizes a bundle's SmolLM2 tokenizer (byte-level BPE, chat tokens, the semantic-ID
    tokens added) with ``tokenizers`` directly: the same ids and left padding as transformers'."""
    from transformers import AutoTokenizer

    from semantic_ids.decoding import build_prompt
    from semantic_ids.ids import IdScheme
    from semantic_ids.served_tokenizer import ServedTokenizer
    from training.llm.tokens import add_semantic_tokens

    tokenizer = AutoTokenizer.from_pretrained(str(prepare_base_model(tmp_path).folder))
    add_semantic_tokens(tokenizer, IdScheme(codebook_sizes=(32, 32, 32, 8)))
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    expected = AutoTokenizer.from_pretrained(str(tmp_path / "tokenizer"))
    served = ServedTokenizer(tmp_path / "tokenizer", padding_side="left")
    queries = [
        "Keanu Reeves in the 90s",
        "une comédie des années 80",
        "日本の映画",
        "  x ",
        "<|im_start|>[REC]",
    ]
    prompts = [build_prompt(query) for query in queries]
    got = served(prompts, padding=True, return_tensors="pt")
    want = expected(prompts, padding=True, padding_side="left", return_tensors="pt")
    assert all(torch.equal(got[key], want[key]) for key in ("input_ids", "attention_mask"))
    assert len(served) == len(expected) and served.pad_token_id == expected.pad_token_id
