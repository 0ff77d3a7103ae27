"""Wrap a causal LM with a LoRA adapter whose only other trainable weights are the new token rows."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from peft import LoraConfig, get_peft_model

from semantic_ids.causal_lm import heads_are_tied

logger = logging.getLogger(__name__)

# Attention and MLP projections of Llama-style blocks (SmolLM2, the tiny test Llama).
LLAMA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSettings:
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: tuple[str, ...] = LLAMA_PROJECTIONS

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "target_modules": list(self.target_modules)}


def attach_lora(model: Any, settings: LoraSettings, new_token_ids: Sequence[int]) -> Any:
    """A peft model: LoRA on the projections, plus trainable rows for the new tokens only.

    ``trainable_token_indices`` keeps a tied ``lm_head`` tied; an untied head gets its own rows.
    """
    trainable = {"embed_tokens": list(new_token_ids)}
    if not heads_are_tied(model):
        trainable["lm_head"] = list(new_token_ids)
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        trainable_token_indices=trainable,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    trainable_count = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    logger.info(
        "LoRA rank %d on %s: %d trainable parameters", settings.rank, settings.target_modules, trainable_count
    )
    return peft_model
