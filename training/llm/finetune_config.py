"""The fine-tuning config (frozen) and what a fine-tuning run returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from training.llm.lora import LoraSettings
from training.llm.tokens import TokenInit

FinetuneMethod = Literal["top_layers", "top_layers_lora"]


@dataclass(frozen=True)
class FinetuneConfig:
    # One loop (training/llm/train_top_layers.py): the top ``trainable_layers`` layers and the new tokens'
    # output rows, on fresh queries every epoch, stopped by ``time_budget_s`` (or ``max_steps``).
    # "top_layers" trains those layers in full; "top_layers_lora" trains LoRA adapters (``lora``, at
    # ``lr_lora``) on them instead; with every layer (``trainable_layers`` = the base model's count) that is
    # LoRA on every layer.
    method: FinetuneMethod = "top_layers"
    trainable_layers: int = 8
    # Frozen layers removed just below the trained ones (``semantic_ids.causal_lm.drop_decoder_layers``):
    # the trained layers learn on what the layers below them give, and every step and every served
    # forward runs that many layers fewer.
    dropped_layers: int = 0
    lr_layers: float = 1e-3
    time_budget_s: float = 0.0  # seconds of training; 0 = until max_steps
    queries_per_item: int = 8  # fresh queries per item per epoch
    epoch_repeats: int = 1  # passes over one epoch's queries (> 1: frozen activations cached)
    # auto | bf16 | fp32 | fp32-frozen-fp16 (the frozen layers over fp16-stored weights).
    # auto: bf16 on CUDA; on a CPU the fastest of a timed step (training/llm/step_precision.py).
    precision: str = "auto"
    compile: bool = False  # on CPU: torch.compile the layers (needs a C++ compiler; else eager)
    lora: LoraSettings = field(default_factory=LoraSettings)
    token_init: TokenInit = "cluster"
    batch_size: int = 16
    max_steps: int = 600  # optimizer steps, when there is no time budget
    lr_lora: float = 1e-3  # top_layers_lora: the adapters
    lr_tokens: float = 1e-2
    warmup_steps: int = 30
    min_lr_ratio: float = 0.1
    max_grad_norm: float = 1.0
    max_length: int = 64
    eval_every: int = 200  # optimizer steps between recall watches; 0 = only at the end
    eval_queries: int = 48  # held-out queries the watch asks
    eval_beams: int = 10
    seed: int = 0
    device: str = "auto"

    def adapter(self) -> dict[str, Any]:
        """What the bundle manifest records of the trained weights (its ``lora`` section)."""
        layers = {"trainable_layers": self.trainable_layers}
        if self.dropped_layers:  # absent in bundles trained on every layer of the base (older ones too)
            layers["dropped_layers"] = self.dropped_layers
        if self.method == "top_layers":
            return {"method": "top_layers", **layers}
        return {"method": self.method, **layers, **self.lora.to_dict()}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lora": self.lora.to_dict()}


@dataclass
class FinetuneResult:
    model: Any
    history: list[dict[str, Any]]
    steps: int
    examples_seen: int
    train_seconds: float
    train_examples: int = 0  # examples available to the loop (one pass = this many seen)
    precision: str = "fp32"  # how the steps computed (training/llm/step_precision.py)

    @property
    def examples_per_second(self) -> float:
        return self.examples_seen / self.train_seconds if self.train_seconds else 0.0
