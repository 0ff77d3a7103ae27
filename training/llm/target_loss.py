"""The fine-tuning loss: cross-entropy on the target tokens only.

"restricted" (the default) scores a code-token target against the new tokens' rows only, because
that is the comparison constrained decoding makes: the trie masks every ordinary token at those
positions, so teaching the model to beat 49k ordinary tokens there is wasted effort (and a
full-vocabulary head over every position costs a fifth of a CPU step). Targets that are ordinary
text (the attribute answers) are still scored against the full vocabulary. "full" is the plain
causal-LM loss over the whole vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F

from semantic_ids.causal_lm import heads_are_tied
from training.llm.batches import IGNORE

LossKind = Literal["restricted", "full"]


class TargetLoss:
    def __init__(self, new_token_ids: Sequence[int], kind: LossKind) -> None:
        if kind not in ("restricted", "full"):
            raise ValueError(f"unknown loss {kind!r}: use restricted or full")
        ids = list(new_token_ids)
        if ids != list(range(ids[0], ids[0] + len(ids))):
            raise ValueError("the new token ids must be contiguous")
        self.kind, self.first, self.count = kind, ids[0], len(ids)

    def __call__(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
        if self.kind == "full" or not heads_are_tied(causal_lm):
            plain: torch.Tensor = model(**batch).loss
            return plain
        body = getattr(causal_lm, causal_lm.base_model_prefix)
        hidden = body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        labels = batch["labels"][:, 1:]  # (batch, width - 1): position t predicts token t + 1
        mask = labels != IGNORE
        states, targets = hidden[:, :-1][mask], labels[mask]  # (n, hidden), (n,)
        is_code = (targets >= self.first) & (targets < self.first + self.count)
        total = hidden.new_zeros((), dtype=torch.float32)
        if is_code.any():
            new_ids = torch.arange(self.first, self.first + self.count, device=targets.device)
            rows = causal_lm.get_input_embeddings()(new_ids)  # (count, hidden), peft's trained values
            logits = states[is_code] @ rows.T  # (n_code, count)
            total = total + F.cross_entropy(logits.float(), targets[is_code] - self.first, reduction="sum")
        if (~is_code).any():
            logits = causal_lm.get_output_embeddings()(states[~is_code])  # (n_text, vocab)
            total = total + F.cross_entropy(logits.float(), targets[~is_code], reduction="sum")
        mean: torch.Tensor = total / max(1, int(mask.sum()))
        return mean
