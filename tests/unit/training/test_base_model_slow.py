"""The packaged SmolLM2 GGUF becomes a safetensors base-model folder (real model: marked slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
