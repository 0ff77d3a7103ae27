"""Fine-tuning batches: token ids with the loss on the target tokens only, grouped by length.

Training batches are right-padded so the real tokens sit at positions 0..n-1, the same positions
``generate`` gives a left-padded prompt (it derives positions from the attention mask).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]  # IGNORE on the prompt, the token id on the target


def encode_example(tokenizer: Any, example: Mapping[str, Any], max_length: int) -> Encoded:
    """Prompt tokens exactly as the decoder tokenises them, then the target (+ eos for text answers)."""
    prompt = tokenizer(example["prompt"])["input_ids"]
    target = tokenizer(example["target"], add_special_tokens=False)["input_ids"]
    if example["kind"] != "query":
        target = [*target, tokenizer.eos_token_id]
    prompt = prompt[-max(1, max_length - len(target)) :]  # keep the end: it holds [REC][SEM_START]
    return Encoded(tuple(prompt + target), tuple([IGNORE] * len(prompt) + target))


def encode_examples(tokenizer: Any, examples: Sequence[Mapping[str, Any]], max_length: int) -> list[Encoded]:
    return [encode_example(tokenizer, example, max_length) for example in examples]


def length_grouped_batches(
    encoded: Sequence[Encoded], batch_size: int, seed: int, *, group: int = 64
) -> list[list[int]]:
    """Shuffled batches of indices whose sequences have similar lengths (less padding, same randomness)."""
    rng = random.Random(seed)
    order = list(range(len(encoded)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    span = batch_size * group
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: len(encoded[i].input_ids))
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def collate(encoded: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(e.input_ids) for e in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)  # (batch, width)
    labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, example in enumerate(encoded):
        n = len(example.input_ids)
        input_ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
