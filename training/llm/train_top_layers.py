"""The top-layers training loop: fresh queries each epoch, bf16 where it is native, a time budget.

Every ``eval_every`` optimizer steps (and at the end) ``watch`` reports Recall@10 on a sample of
training phrasings and on held-out phrasings, so memorisation and generalisation are both in the
history. The learning rate follows warmup then a cosine over the *time* budget, so the schedule fits
however fast the machine is.

Under ``torchrun`` (``place.world_size`` > 1) the loop is data-parallel: the model is wrapped in
``DistributedDataParallel``, every rank draws the same seeded epoch and trains on its disjoint shard of
it (``Place.shard``, a chunk of items at a time), so each optimizer step averages the gradients of
``world_size`` batches. The ranks agree on everything that decides a step: the precision (rank 0's),
the number of batches in a chunk, the schedule's progress (the furthest rank's) and when to stop (as
soon as any rank's budget is spent).
Rank 0 alone watches, logs and reports; the others wait for it with their clocks paused alike.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from semantic_ids.causal_lm import resolve_device
from training.distributed import Place
from training.llm.batches import Encoded, collate, encode_examples, length_grouped_batches
from training.llm.finetune_config import FinetuneConfig, FinetuneResult
from training.llm.query_generator import QueryGenerator
from training.llm.step_precision import StepPrecision, choose_step_precision
from training.llm.top_layers import ActivationCache, TopLayersModel

logger = logging.getLogger(__name__)

Watch = Callable[[Any], dict[str, float]]  # exported causal LM -> figures


def _lr_factor(step: int, progress: float, config: FinetuneConfig) -> float:
    warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return warm * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


def _epoch_batches(
    model: TopLayersModel,
    tokenizer: Any,
    generator: QueryGenerator,
    config: FinetuneConfig,
    epoch: int,
    place: Place,
) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor | None]]:
    """The epoch's batches, its queries generated and encoded a chunk of items at a time
    (``QueryGenerator.chunks``: one chunk up to 20,000 items), so the first step of a million-item epoch
    does not wait for 8 million queries. Every rank draws the same chunk and trains on its disjoint
    shard of it."""
    for chunk in generator.chunks(epoch):
        encoded = encode_examples(tokenizer, place.shard(chunk), config.max_length)
        yield from _batches(model, encoded, tokenizer.pad_token_id, config, epoch, place)


def _batches(
    model: TopLayersModel,
    encoded: list[Encoded],
    pad_id: int,
    config: FinetuneConfig,
    epoch: int,
    place: Place,
) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor | None]]:
    """One epoch's batches, ``epoch_repeats`` passes, with cached frozen activations when repeating."""
    order = length_grouped_batches(encoded, config.batch_size, config.seed + epoch)
    # Every rank must take the same number of steps (each is an all-reduce of the gradients).
    order = merge_down(order, int(place.reduce(len(order), "min")))
    batches = [collate([encoded[i] for i in indices], pad_id) for indices in order]
    cache = ActivationCache(model, batches) if config.epoch_repeats > 1 else None
    for repeat in range(config.epoch_repeats):
        for index in torch.randperm(len(batches), generator=torch.Generator().manual_seed(repeat)).tolist():
            yield batches[index], cache[index] if cache is not None else None


def merge_down(order: list[list[int]], count: int) -> list[list[int]]:
    """``order`` in ``count`` batches: the smallest batch merged into the next smallest until it fits.

    The ranks' shards differ by at most one example, so one rank may have one batch more than another: a
    batch of one example, the remainder of its last length group. Merging keeps every example of the
    shard in the epoch (dropping it would not); a no-op when the counts agree (always, alone)."""
    if count < 1:
        raise ValueError("a rank has no batch this epoch: fewer examples than processes")
    order = [list(batch) for batch in order]
    while len(order) > count:
        order.sort(key=len)
        order[1].extend(order.pop(0))
    return order


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
    *,
    place: Place | None = None,
) -> FinetuneResult:
    """Train in place until the time budget (or ``max_steps``) is spent; the result holds the exported LM.
    ``place``: this process's rank under ``torchrun`` [alone]."""
    place = place or Place()
    # Under torchrun each rank trains on the device its place was given (its local GPU, or the CPU).
    device = place.device if place.is_distributed else resolve_device(config.device)
    model.to(device).train()
    clock = _Clock(config.time_budget_s)  # from here: the probe below is part of what training costs
    precision = _agreed_precision(model, config, device, place)
    if config.compile and place.is_distributed:
        # Compiled layers inside DDP's gradient hooks are untested here (and compile_layers is CPU only,
        # where DDP is the slow gloo path anyway): data-parallel ranks train eager.
        logger.warning("training eager, not compiled: torch.compile is off under torchrun")
    elif config.compile:
        model.compile_layers()
    torch.manual_seed(config.seed)
    optimizer = _optimizer(model, config)
    forward = _data_parallel(model, device) if place.is_distributed else model
    history, step, seen, epoch, watched_at = [], 0, 0, 0, -1
    progress = tqdm(desc="fine-tune", unit="step", disable=not place.is_main)
    while not place.any_true(_finished(clock, step, config)):
        for batch, lower in _epoch_batches(model, tokenizer, generator, config, epoch, place):
            schedule = place.reduce(clock.progress(step, config.max_steps), "max")  # one lr on every rank
            factor = _lr_factor(step, schedule, config)
            batch = {k: v.to(device) for k, v in batch.items()}
            dtype, max_norm = precision.dtype, config.max_grad_norm
            loss = _step(forward, model, optimizer, batch, lower, factor, dtype, max_norm)
            step, seen = step + 1, seen + len(batch["input_ids"])
            record: dict[str, Any] = {"step": step, "epoch": epoch, "loss": round(loss, 4)}  # this rank's
            record["seconds"] = round(clock.spent, 1)
            if watch is not None and config.eval_every and step % config.eval_every == 0:
                with clock.paused():
                    record |= _watched(model, watch, place)
                watched_at = step
            history.append(record)
            progress.update(1)
            progress.set_postfix(loss=f"{record['loss']:.3f}", epoch=epoch)
            if place.any_true(_finished(clock, step, config)):
                break
        epoch += 1
    progress.close()
    train_seconds = clock.spent
    if watch is not None and history and watched_at != step:
        history[-1] |= _watched(model, watch, place)
    lm = model.export().eval()
    seen = int(place.reduce(seen, "sum"))  # the examples of every rank
    if place.is_main:
        logger.info(
            "trained %d steps, %d examples, %d epochs, %.0f s (%s, %d processes)",
            step,
            seen,
            epoch,
            train_seconds,
            precision.name,
            place.world_size,
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


def _agreed_precision(
    model: TopLayersModel, config: FinetuneConfig, device: torch.device, place: Place
) -> StepPrecision:
    """Rank 0 chooses (``auto`` times a step on a CPU, and two ranks timing at once could choose
    differently); the others take its choice, so every rank computes its share alike."""
    if place.is_main:
        precision = choose_step_precision(model, config.precision, device, config.batch_size)
        place.from_main(precision.name)
        return precision
    return choose_step_precision(model, place.from_main(config.precision), device, config.batch_size)


def _data_parallel(model: TopLayersModel, device: torch.device) -> nn.Module:
    """``model`` behind DDP: each backward all-reduces (averages) the trainable parameters' gradients.

    No ``find_unused_parameters``: every trainable parameter takes part in every loss, ``code_rows``
    included (``TopLayersModel.loss`` keeps it in the graph even for a batch without code targets), so
    DDP need not walk the graph each step to find unused ones. No ``broadcast_buffers``: the only
    buffers (rotary frequencies) never change, and broadcasting them would cost a collective a step."""
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        broadcast_buffers=False,
        find_unused_parameters=False,
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
    forward: nn.Module,
    model: TopLayersModel,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    lower: torch.Tensor | None,
    lr_factor: float,
    dtype: torch.dtype,
    max_grad_norm: float,
) -> float:
    """One optimizer step at ``lr_factor`` of the base learning rates; the batch's loss. ``forward`` is
    ``model`` itself, or ``model`` behind DDP (whose backward averages the gradients over the ranks)."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * lr_factor
    device_type = batch["input_ids"].device.type
    with torch.autocast(device_type, dtype=dtype, enabled=dtype != torch.float32):
        loss = forward(batch, lower)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def _finished(clock: _Clock, step: int, config: FinetuneConfig) -> bool:
    """Whether the budget is spent; never before the first step: a budget that the precision probe (and
    its compilation) used up would otherwise leave an untrained model and an empty history."""
    if config.time_budget_s:
        return step >= 1 and clock.spent >= config.time_budget_s
    return step >= config.max_steps


def _watched(model: TopLayersModel, watch: Watch, place: Place) -> dict[str, float]:
    """The watch's figures on rank 0 ({} elsewhere); the other ranks wait for it."""
    lm = model.export().eval()  # on every rank: exporting unties the head, and the ranks' models stay alike
    figures = watch(lm) if place.is_main else {}
    place.barrier()
    model.train()
    if place.is_main:
        logger.info("watch: %s", figures)
    return figures
