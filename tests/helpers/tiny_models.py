"""A tiny random Llama and a character-level tokenizer, saved like a real base-model folder.

Unit tests use these instead of SmolLM2: a training step takes about 0.2 s, and the folder has the same
shape (config.json, model.safetensors, tokenizer files) as a prepared base model.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from semantic_ids.bundle import BASE_WEIGHTS

TINY_BASE_NAME = "tiny-random-llama"
_SYMBOLS = ["<pad>", "<unk>", "<eos>", *(string.ascii_letters + string.digits + string.punctuation + " ")]


def make_tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {symbol: index for index, symbol in enumerate(_SYMBOLS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")  # one token per character
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="<eos>",
        padding_side="left",
    )


def make_tiny_base_model(base_models_dir: Path, *, seed: int = 0) -> Path:
    """Write a tiny random Llama base-model folder under ``base_models_dir`` and return its path."""
    folder = base_models_dir / TINY_BASE_NAME
    if (folder / BASE_WEIGHTS).is_file():
        return folder
    torch.manual_seed(seed)
    tokenizer = make_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def randomise_code_rows(model: Any, new_ids: list[int], seed: int) -> None:
    """Spread the new rows apart, so the tiny model's code distributions are far from uniform."""
    torch.manual_seed(seed)
    with torch.no_grad():
        model.get_input_embeddings().weight[new_ids] = torch.randn(len(new_ids), model.config.hidden_size)
        head = model.get_output_embeddings().weight
        if head.data_ptr() != model.get_input_embeddings().weight.data_ptr():
            head[new_ids] = torch.randn(len(new_ids), model.config.hidden_size) * 2
