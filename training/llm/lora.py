"""LoRA adapters on some decoder layers of a causal LM, injected in place and merged into a plain copy on
export: the ``top_layers_lora`` method (every layer's, with ``trainable_layers`` = all of them)."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from torch import nn

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
    del model.peft_config  # peft's mark of a peft model: the model and its export stay plain causal LMs


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
