"""LoRA adapters on a causal LM: every layer's behind a peft model (the LoRA method), or some layers'
injected in place and merged into a plain copy on export (the top layers' LoRA option)."""

from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from peft import LoraConfig, get_peft_model, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from torch import nn

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


def inject_lora(model: nn.Module, settings: LoraSettings, layers: Sequence[int]) -> None:
    """LoRA adapters, in place, on the projections of the decoder layers ``layers`` only; every other
    weight is frozen and stays a plain module. The model is not wrapped in a peft model."""
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        layers_to_transform=list(layers),
    )
    inject_adapter_in_model(config, model)
    del model.peft_config  # what marks a peft model (the bundle writer saves those as an adapter)


def merged_copy(model: nn.Module, adapted: nn.Module) -> Any:
    """``model`` without LoRA modules: a copy of the part ``adapted`` with the adapters merged into its
    plain linear weights; every weight outside ``adapted`` is shared with ``model``, not copied.
    ``model`` keeps its unmerged adapters, so it can go on training."""
    copied = {id(t) for t in itertools.chain(adapted.parameters(), adapted.buffers())}
    own = itertools.chain(model.parameters(), model.buffers())
    shared: dict[int, Any] = {id(t): t for t in own if id(t) not in copied}  # deepcopy's memo: kept as is
    merged = copy.deepcopy(model, memo=shared)
    for name, module in list(merged.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()  # base weight += scale * B @ A, on the copy's own base weight
            parent, _, child = name.rpartition(".")
            setattr(merged.get_submodule(parent), child, module.get_base_layer())
    return merged
