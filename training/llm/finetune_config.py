"""The fine-tuning config (frozen) and what a fine-tuning run returns."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from training.llm.lora import LoraSettings
from training.llm.target_loss import LossKind
from training.llm.tokens import TokenInit

FinetuneMethod = Literal["top_layers", "top_layers_lora", "lora"]


@dataclass(frozen=True)
class FinetuneConfig:
    # "top_layers": the top ``trainable_layers`` layers and the new tokens' output rows, on fresh
    # queries every epoch, stopped by ``time_budget_s`` (training/llm/top_layers.py). "lora": LoRA on
    # every layer over the fixed examples file, ``max_steps`` steps (the first design, kept for comparison).
    # "top_layers_lora": the top-layers loop with LoRA (``lora``, at ``lr_lora``) on the top
    # ``trainable_layers`` layers in place of training them in full.
    method: FinetuneMethod = "lora"
    trainable_layers: int = 8
    lr_layers: float = 1e-3
    time_budget_s: float = 0.0  # top_layers: seconds of training; 0 = until max_steps
    queries_per_item: int = 8  # top_layers: fresh queries per item per epoch
    epoch_repeats: int = 1  # top_layers: passes over one epoch's queries (> 1: frozen activations cached)
    # auto | bf16 | fp32 | fp32-frozen-fp16 (top_layers: the frozen layers over fp16-stored weights).
    # auto: bf16 on CUDA; on a CPU the fastest of a timed step (training/llm/step_precision.py).
    precision: str = "auto"
    compile: bool = False  # top_layers on CPU: torch.compile the layers (needs a C++ compiler; else eager)
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

    @property
    def trains_top_layers(self) -> bool:
        """Whether the top-layers loop trains (training/llm/train_top_layers.py), with LoRA or without."""
        return self.method in ("top_layers", "top_layers_lora")

    def adapter(self) -> dict[str, Any]:
        """What the bundle manifest records of the trained weights (its ``lora`` section)."""
        if self.method == "top_layers":
            return {"method": "top_layers", "trainable_layers": self.trainable_layers}
        if self.method == "top_layers_lora":
            return {"method": self.method, "trainable_layers": self.trainable_layers, **self.lora.to_dict()}
        return {"method": "lora", **self.lora.to_dict()}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lora": self.lora.to_dict()}

    def fingerprint(self, examples: Sequence[Mapping[str, Any]]) -> str:
        """What a checkpoint must match to be resumed: this config (bar logistics) and the same examples."""
        logistics = {"eval_every", "checkpoint_every", "device", "compile"}
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
    precision: str = "fp32"  # top_layers: how the steps computed (training/llm/step_precision.py)

    @property
    def examples_per_second(self) -> float:
        return self.examples_seen / self.train_seconds if self.train_seconds else 0.0
