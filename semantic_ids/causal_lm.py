"""Torch-only helpers that training and serving both need around a causal LM: the device to run on,
whether the output head shares the input embedding, and growing the embedding for new tokens.

No transformers or peft import: the model is used through its own methods.
"""

from __future__ import annotations

from typing import Any

import torch


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _stored_weight(module: Any) -> Any:
    """The module's own weight tensor; peft wrappers' ``.weight`` is a fresh merged copy on every access."""
    inner = getattr(module, "original_module", None) or module
    if hasattr(inner, "get_base_layer"):
        inner = inner.get_base_layer()
    return inner.weight


def heads_are_tied(model: Any) -> bool:
    """True when the output head is the input embedding (or there is no head)."""
    head = model.get_output_embeddings()
    if head is None:
        return True
    return bool(_stored_weight(head).data_ptr() == _stored_weight(model.get_input_embeddings()).data_ptr())


def resize_for_tokens(model: Any, tokenizer: Any) -> int:
    """Grow the embedding (and a tied head) to cover the tokenizer; never shrink a padded vocabulary."""
    size = max(len(tokenizer), model.get_input_embeddings().weight.shape[0])
    model.resize_token_embeddings(size, mean_resizing=False)
    return int(size)
