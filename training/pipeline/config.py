"""What one pipeline run is configured by, and how command-line overrides are checked against it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from semantic_ids.bundle import FusionParams
from training.llm.base_model import SMOLLM2_NAME
from training.llm.examples import ExampleConfig
from training.llm.finetune_config import FinetuneConfig
from training.llm.lora import LoraSettings

TOKEN_INITS = ("mean", "cluster")
METHODS = ("top_layers", "top_layers_lora")
# The first design's loop, LoRA on every layer over the examples file, is gone: the one loop does it.
RETIRED_METHODS = {
    "lora": "--method lora was retired: use --method top_layers_lora --trainable-layers 30 "
    "(the base model's layer count) for LoRA on every layer",
}


class PipelineError(RuntimeError):
    """A stage's input is missing or wrong; the message says which command to run or what to fix."""


@dataclass(frozen=True)
class PipelineConfig:
    profile: str
    examples: ExampleConfig = field(default_factory=ExampleConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    eval_queries: int = 300  # held-out queries in the evaluation table (seeded sample)
    eval_beams: int = 10
    seen_phrasing_queries: int = 100  # training queries re-asked: memorisation vs generalisation
    base_model: str = SMOLLM2_NAME
    # hybrid fusion written into the bundle (a tuning of an earlier bundle of the profile); None: the
    # defaults. ``bench/tune_fusion.py --write`` tunes a bundle on its own held-out phrasings.
    fusion: FusionParams | None = None
    # The whole run's time, when the profile promises one (the demo: under 25 minutes): fine-tuning gets
    # what the stages before it leave, less the reserve for the stages after it (model set-up and the
    # last watch, evaluation, bundle), and never more than its own budget. 0: the budget as configured.
    total_budget_s: float = 0.0
    after_training_s: float = 150.0

    def with_training_time(self, elapsed_s: float) -> PipelineConfig:
        """This config with the fine-tuning budget cut to what ``total_budget_s`` leaves after
        ``elapsed_s``; at least half the configured budget, so a slow machine still trains a model."""
        budget = self.finetune.time_budget_s
        if not self.total_budget_s or not budget:
            return self
        left = self.total_budget_s - elapsed_s - self.after_training_s
        fitted = max(budget / 2, min(budget, left))
        return replace(self, finetune=replace(self.finetune, time_budget_s=fitted))

    def to_dict(self) -> dict[str, Any]:
        fusion = None if self.fusion is None else self.fusion.model_dump(exclude={"figures"})
        return {**asdict(self), "finetune": self.finetune.to_dict(), "fusion": fusion}

    def with_overrides(
        self, *, eval_queries: int | None = None, rank: int | None = None, **finetune: Any
    ) -> PipelineConfig:
        """This config with fine-tuning overrides applied (None keeps the value); bad values raise.

        Messages name the command-line option (``--max-steps``) that carries each override.
        """
        changes = {key: value for key, value in finetune.items() if value is not None}
        for key, value in changes.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                raise PipelineError(f"--{key.replace('_', '-')} must not be negative, got {value}")
        if changes.get("token_init") not in (None, *TOKEN_INITS):
            raise PipelineError(f"--token-init must be mean or cluster, got {changes['token_init']!r}")
        if changes.get("method") in RETIRED_METHODS:
            raise PipelineError(RETIRED_METHODS[changes["method"]])
        if changes.get("method") not in (None, *METHODS):
            methods = f"{', '.join(METHODS[:-1])} or {METHODS[-1]}"
            raise PipelineError(f"--method must be {methods}, got {changes['method']!r}")
        for key in ("trainable_layers", "epoch_repeats"):
            if changes.get(key) == 0:
                raise PipelineError(f"--{key.replace('_', '-')} must be at least 1")
        tuned = replace(self.finetune, **changes)
        if rank is not None:
            if rank < 1:
                raise PipelineError(f"--rank must be at least 1, got {rank}")
            tuned = replace(tuned, lora=LoraSettings(rank=rank, alpha=2 * rank))
        if tuned.max_steps < 1 or tuned.batch_size < 1:
            raise PipelineError("--max-steps and --batch-size must be at least 1")
        return replace(
            self,
            finetune=tuned,
            eval_queries=eval_queries if eval_queries is not None else self.eval_queries,
            # A budget given on the command line is taken as given.
            total_budget_s=0.0 if "time_budget_s" in changes else self.total_budget_s,
        )
