"""The in-training check: loss on held-out examples and a quick constrained-decoding recall."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from semantic_ids.decoding import ConstrainedDecoder
from semantic_ids.ids import IdScheme
from semantic_ids.trie import PrefixTrie
from training.data.items import CatalogueItem
from training.eval.evaluate import model_rankings
from training.eval.metrics import ranking_metrics
from training.llm.batches import collate, encode_examples
from training.llm.finetune_config import FinetuneConfig
from training.llm.target_loss import TargetLoss


def target_loss_for(model: Any, config: FinetuneConfig) -> TargetLoss:
    """The loss over the new tokens that ``attach_lora`` made trainable."""
    new_ids = model.peft_config["default"].trainable_token_indices["embed_tokens"]
    return TargetLoss(new_ids, config.loss)


def autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA; a no-op on CPU (fp32)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


class Validator:
    """Loss on held-out examples and a quick constrained-decoding recall on held-out queries."""

    def __init__(
        self,
        tokenizer: Any,
        valid: Sequence[Mapping[str, Any]],
        items: Sequence[CatalogueItem],
        scheme: IdScheme,
        config: FinetuneConfig,
    ) -> None:
        self.tokenizer, self.config = tokenizer, config
        self.loss_encoded = encode_examples(tokenizer, valid[: config.eval_loss_examples], config.max_length)
        queries = [v for v in valid if v["kind"] == "query"][: config.eval_queries]
        self.queries = [q["query"] for q in queries]
        self.sources = [q["item_id"] for q in queries]
        ids = [item.sid for item in items]
        self.trie = PrefixTrie(ids, scheme)
        self.item_of = {sid: item.item_id for sid, item in zip(ids, items, strict=True)}

    @torch.no_grad()
    def __call__(self, model: Any, device: torch.device) -> dict[str, float]:
        model.eval()
        loss_fn = target_loss_for(model, self.config)
        losses = []
        for start in range(0, len(self.loss_encoded), self.config.batch_size):
            batch = collate(
                self.loss_encoded[start : start + self.config.batch_size], self.tokenizer.pad_token_id
            )
            with autocast(device):
                losses.append(float(loss_fn(model, {k: v.to(device) for k, v in batch.items()})))
        result = {"valid_loss": round(sum(losses) / len(losses), 4)} if losses else {}
        if self.queries:
            decoder = ConstrainedDecoder(model, self.tokenizer, self.trie)
            ranked, _ = model_rankings(decoder, self.queries, self.item_of, beams=self.config.eval_beams)
            metrics = ranking_metrics(ranked, self.sources)
            result |= {"valid_recall@1": metrics["recall@1"], "valid_recall@10": metrics["recall@10"]}
        model.train()
        return result
