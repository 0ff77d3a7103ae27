"""LoRA fine-tuning of the base LLM to write semantic IDs: one explicit loop over a frozen config.

Trainable: LoRA on the attention and MLP projections, and the embedding rows of the new tokens
(peft ``trainable_token_indices``; the tied ``lm_head`` stays tied). The rows get their own, higher
learning rate: they start from nothing while LoRA only nudges a trained network. Optionally a first
stage trains the rows alone (LoRA learning rate held at zero). Loss only on the target tokens.
bf16 autocast on CUDA, fp32 on CPU, same code. The config is in ``finetune_config``, the resumable
state in ``checkpoint``, the in-training check in ``validator``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from semantic_ids.causal_lm import resize_for_tokens, resolve_device
from semantic_ids.ids import IdScheme
from training.data.items import CatalogueItem
from training.llm.batches import Encoded, collate, encode_examples, epoch_batches
from training.llm.checkpoint import resume, save_checkpoint
from training.llm.finetune_config import FinetuneConfig, FinetuneResult
from training.llm.lora import attach_lora
from training.llm.target_loss import TargetLoss
from training.llm.tokens import add_semantic_tokens, initialise_new_rows
from training.llm.validator import Validator, autocast, target_loss_for
from training.run_layout import RunLayout

logger = logging.getLogger(__name__)


def prepare_model(
    base_dir: Path,
    scheme: IdScheme,
    items: Sequence[CatalogueItem],
    config: FinetuneConfig,
    rq_levels: int,
) -> tuple[Any, Any, list[int]]:
    """Base model + tokenizer with the semantic-ID tokens, initialised rows, and LoRA attached."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    new_ids = add_semantic_tokens(tokenizer, scheme)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    resize_for_tokens(model, tokenizer)
    initialise_new_rows(
        model,
        tokenizer,
        scheme,
        strategy=config.token_init,
        items=items,
        rq_levels=rq_levels,
        seed=config.seed,
    )
    return attach_lora(model, config.lora, new_ids), tokenizer, new_ids


def lr_factor(step: int, config: FinetuneConfig) -> float:
    """Linear warmup, then cosine decay to ``min_lr_ratio`` at ``max_steps``."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps))
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _optimizer(model: Any, config: FinetuneConfig) -> torch.optim.Optimizer:
    rows = [p for n, p in model.named_parameters() if p.requires_grad and "trainable_tokens" in n]
    lora = [p for n, p in model.named_parameters() if p.requires_grad and "trainable_tokens" not in n]
    groups = [{"params": rows, "lr": config.lr_tokens, "base_lr": config.lr_tokens, "name": "rows"}]
    if lora:
        groups.append({"params": lora, "lr": config.lr_lora, "base_lr": config.lr_lora, "name": "lora"})
    return torch.optim.AdamW(groups, weight_decay=0.0, betas=(0.9, 0.98))


def _set_lr(optimizer: torch.optim.Optimizer, step: int, config: FinetuneConfig) -> None:
    for group in optimizer.param_groups:
        if group["name"] == "lora" and step < config.rows_only_steps:
            group["lr"] = 0.0
            continue
        group["lr"] = group["base_lr"] * lr_factor(step, config)


class _Trainer:
    """The state one ``finetune`` call carries from step to step."""

    def __init__(
        self, model: Any, tokenizer: Any, encoded: list[Encoded], config: FinetuneConfig, device: torch.device
    ) -> None:
        self.model, self.pad_id, self.encoded, self.config = model, tokenizer.pad_token_id, encoded, config
        self.device = device
        self.optimizer = _optimizer(model, config)
        self.loss_fn: TargetLoss = target_loss_for(model, config)
        self.stream: Iterator[list[int]] = epoch_batches(encoded, config.batch_size, config.seed)
        self.seen = 0

    def skip(self, steps: int) -> None:
        """Replay the data order up to a resumed step."""
        for _ in range(steps * self.config.grad_accum):
            next(self.stream)

    def step(self, step: int) -> float:
        """One optimizer step (``grad_accum`` batches); the summed loss."""
        _set_lr(self.optimizer, step, self.config)
        loss_sum = 0.0
        for _ in range(self.config.grad_accum):
            indices = next(self.stream)
            batch = collate([self.encoded[i] for i in indices], self.pad_id).items()
            with autocast(self.device):
                loss = (
                    self.loss_fn(self.model, {k: v.to(self.device) for k, v in batch})
                    / self.config.grad_accum
                )
            torch.autograd.backward(loss)
            loss_sum += float(loss.detach())
            self.seen += len(indices)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        torch.nn.utils.clip_grad_norm_(trainable, self.config.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_sum


def _validate(
    validator: Validator | None, trainer: _Trainer, step: int
) -> tuple[dict[str, Any] | None, float]:
    """The validator's figures at this step (None when none are due) and the seconds they took."""
    config = trainer.config
    last = step == config.max_steps
    if validator is None or not (last or (config.eval_every and step % config.eval_every == 0)):
        return None, 0.0
    started = time.perf_counter()
    figures = validator(trainer.model, trainer.device)
    return figures, time.perf_counter() - started


def finetune(
    model: Any,
    tokenizer: Any,
    train: Sequence[Mapping[str, Any]],
    validator: Validator | None,
    config: FinetuneConfig,
    run_dir: Path | None = None,
    *,
    stop_after: int | None = None,
) -> FinetuneResult:
    """Train ``model`` (a peft model from ``prepare_model``) in place; resume from ``run_dir`` if it fits.

    ``stop_after``: leave after this many steps in this call (checkpointed), e.g. for a time-boxed session.
    """
    device = resolve_device(config.device)
    model.to(device).train()
    torch.manual_seed(config.seed)
    trainer = _Trainer(model, tokenizer, encode_examples(tokenizer, train, config.max_length), config, device)
    checkpoint = RunLayout(run_dir).checkpoint if run_dir else None
    fingerprint = config.fingerprint(train)
    step, history = resume(model, trainer.optimizer, checkpoint, fingerprint)
    trainer.skip(step)
    started, valid_seconds = time.perf_counter(), 0.0
    progress = tqdm(total=config.max_steps, initial=step, desc="fine-tune", unit="step")
    end = config.max_steps if stop_after is None else min(config.max_steps, step + stop_after)
    while step < end:
        loss_sum = trainer.step(step)
        step += 1
        progress.update(1)
        progress.set_postfix(loss=f"{loss_sum:.3f}")
        figures, seconds = _validate(validator, trainer, step)
        record: dict[str, Any] = {"step": step, "loss": round(loss_sum, 4)}
        if figures is not None:
            record |= figures
            valid_seconds += seconds
            logger.info("step %d: %s", step, record)
        history.append(record)
        if checkpoint is not None and (step == end or step % config.checkpoint_every == 0):
            save_checkpoint(model, trainer.optimizer, checkpoint, step, history, fingerprint)
    progress.close()
    model.eval()
    return FinetuneResult(
        model=model,
        history=history,
        steps=step,
        examples_seen=trainer.seen,
        train_seconds=time.perf_counter() - started - valid_seconds,  # throughput counts training only
        train_examples=len(train),
    )
