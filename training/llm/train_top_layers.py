"""The top-layers training loop: fresh queries each epoch, bf16 where it is native, a time budget.

Every ``eval_every`` optimizer steps (and at the end) ``watch`` reports Recall@10 on a sample of
training phrasings and on held-out phrasings, so memorisation and generalisation are both in the
history. The learning rate follows warmup then a cosine over the *time* budget, so the schedule fits
however fast the machine is.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from tqdm.auto import tqdm

from semantic_ids.causal_lm import resolve_device
from training.llm.batches import Encoded, collate, encode_examples, length_grouped_batches
from training.llm.finetune_config import FinetuneConfig, FinetuneResult
from training.llm.query_generator import QueryGenerator
from training.llm.step_precision import choose_step_precision
from training.llm.top_layers import ActivationCache, TopLayersModel

logger = logging.getLogger(__name__)

Watch = Callable[[Any], dict[str, float]]  # exported causal LM -> figures


def _lr_factor(step: int, progress: float, config: FinetuneConfig) -> float:
    warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return warm * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


def _batches(
    model: TopLayersModel, encoded: list[Encoded], pad_id: int, config: FinetuneConfig, epoch: int
) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor | None]]:
    """One epoch's batches, ``epoch_repeats`` passes, with cached frozen activations when repeating."""
    order = length_grouped_batches(encoded, config.batch_size, config.seed + epoch)
    batches = [collate([encoded[i] for i in indices], pad_id) for indices in order]
    cache = ActivationCache(model, batches) if config.epoch_repeats > 1 else None
    for repeat in range(config.epoch_repeats):
        for index in torch.randperm(len(batches), generator=torch.Generator().manual_seed(repeat)).tolist():
            yield batches[index], cache[index] if cache is not None else None


class _Clock:
    """Training seconds against the budget: wall time since the start with the evaluations taken out.
    Writing, encoding and caching each epoch's queries count: they are part of what training costs."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s, self._start, self._paused = budget_s, time.perf_counter(), 0.0

    @property
    def spent(self) -> float:
        return time.perf_counter() - self._start - self._paused

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self._paused += time.perf_counter() - began

    def progress(self, step: int, max_steps: int) -> float:
        return self.spent / self.budget_s if self.budget_s else step / max(1, max_steps)


def train_top_layers(
    model: TopLayersModel,
    tokenizer: Any,
    generator: QueryGenerator,
    config: FinetuneConfig,
    watch: Watch | None = None,
) -> FinetuneResult:
    """Train in place until the time budget (or ``max_steps``) is spent; the result holds the exported LM."""
    device = resolve_device(config.device)
    model.to(device).train()
    clock = _Clock(config.time_budget_s)  # from here: the probe below is part of what training costs
    precision = choose_step_precision(model, config.precision, device, config.batch_size)
    if config.compile:
        model.compile_layers()
    torch.manual_seed(config.seed)
    optimizer = _optimizer(model, config)
    history, step, seen, epoch = [], 0, 0, 0
    progress = tqdm(desc="fine-tune", unit="step")
    while not _finished(clock, step, config):
        encoded = encode_examples(tokenizer, generator.epoch(epoch), config.max_length)
        for batch, lower in _batches(model, encoded, tokenizer.pad_token_id, config, epoch):
            factor = _lr_factor(step, clock.progress(step, config.max_steps), config)
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = _step(model, optimizer, batch, lower, factor, precision.dtype, config.max_grad_norm)
            step, seen = step + 1, seen + len(batch["input_ids"])
            record: dict[str, Any] = {"step": step, "epoch": epoch, "loss": round(loss, 4)}
            record["seconds"] = round(clock.spent, 1)
            if watch is not None and config.eval_every and step % config.eval_every == 0:
                with clock.paused():
                    record |= _watched(model, watch)
            history.append(record)
            progress.update(1)
            progress.set_postfix(loss=f"{record['loss']:.3f}", epoch=epoch)
            if _finished(clock, step, config):
                break
        epoch += 1
    progress.close()
    train_seconds = clock.spent
    if watch is not None and history and not any(key.endswith("recall@10") for key in history[-1]):
        history[-1] |= _watched(model, watch)
    lm = model.export().eval()
    logger.info(
        "trained %d steps, %d examples, %d epochs, %.0f s (%s)",
        step,
        seen,
        epoch,
        train_seconds,
        precision.name,
    )
    return FinetuneResult(
        model=lm,
        history=history,
        steps=step,
        examples_seen=seen,
        train_seconds=train_seconds,
        train_examples=len(generator.items) * generator.per_item,
        precision=precision.name,
    )


def _optimizer(model: TopLayersModel, config: FinetuneConfig) -> torch.optim.Optimizer:
    """AdamW, layers, LoRA adapters (if any) and new rows in their own groups: the rows start from
    nothing, so learn faster."""
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad and n != "code_rows"]
    layers = [p for n, p in trained if "lora_" not in n]
    adapters = [p for n, p in trained if "lora_" in n]
    groups = [
        {"params": layers, "base_lr": config.lr_layers},
        {"params": [model.code_rows], "base_lr": config.lr_tokens},
    ]
    if adapters:
        groups.append({"params": adapters, "base_lr": config.lr_lora})
    return torch.optim.AdamW(groups, weight_decay=0.0, betas=(0.9, 0.98))


def _step(
    model: TopLayersModel,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    lower: torch.Tensor | None,
    lr_factor: float,
    dtype: torch.dtype,
    max_grad_norm: float,
) -> float:
    """One optimizer step at ``lr_factor`` of the base learning rates; the batch's loss."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * lr_factor
    device_type = batch["input_ids"].device.type
    with torch.autocast(device_type, dtype=dtype, enabled=dtype != torch.float32):
        loss = model(batch, lower)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def _finished(clock: _Clock, step: int, config: FinetuneConfig) -> bool:
    if config.time_budget_s:
        return clock.spent >= config.time_budget_s
    return step >= config.max_steps


def _watched(model: TopLayersModel, watch: Watch) -> dict[str, float]:
    lm = model.export().eval()
    figures = watch(lm)
    model.train()
    logger.info("watch: %s", figures)
    return figures
