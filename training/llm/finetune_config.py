"""The fine-tuning config (frozen) and what a fine-tuning run returns."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from training.llm.lora import LoraSettings
from training.llm.target_loss import LossKind
from training.llm.tokens import TokenInit


@dataclass(frozen=True)
class FinetuneConfig:
    lora: LoraSettings = field(default_factory=LoraSettings)
    token_init: TokenInit = "cluster"
    loss: LossKind = "restricted"  # see training/llm/target_loss.py
    batch_size: int = 16
    grad_accum: int = 1
    max_steps: int = 600  # optimizer steps
    lr_lora: float = 1e-3
    lr_tokens: float = 1e-2
    rows_only_steps: int = 0  # first stage: only the new token rows learn
    warmup_steps: int = 30
    min_lr_ratio: float = 0.1
    max_grad_norm: float = 1.0
    max_length: int = 64
    eval_every: int = 200  # optimizer steps; 0 = only at the end
    eval_queries: int = 48
    eval_beams: int = 10
    eval_loss_examples: int = 128
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lora": self.lora.to_dict()}

    def fingerprint(self, examples: Sequence[Mapping[str, Any]]) -> str:
        """What a checkpoint must match to be resumed: this config (bar logistics) and the same examples."""
        logistics = {"eval_every", "checkpoint_every", "device"}
        keep = {k: v for k, v in self.to_dict().items() if k not in logistics}
        digest = hashlib.sha256(json.dumps(keep, sort_keys=True).encode())
        for example in examples:
            digest.update(f"{example['prompt']}\t{example['target']}\n".encode())
        return digest.hexdigest()[:16]


@dataclass
class FinetuneResult:
    model: Any
    history: list[dict[str, Any]]
    steps: int
    examples_seen: int
    train_seconds: float
    train_examples: int = 0  # examples available to the loop (one pass = this many seen)

    @property
    def examples_per_second(self) -> float:
        return self.examples_seen / self.train_seconds if self.train_seconds else 0.0
