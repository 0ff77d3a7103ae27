"""LoRA fine-tuning of the base LLM to write semantic IDs: one explicit loop, one frozen config.

Trainable: LoRA on the attention and MLP projections, and the embedding rows of the new tokens
(peft ``trainable_token_indices``; the tied ``lm_head`` stays tied). The rows get their own, higher
learning rate: they start from nothing while LoRA only nudges a trained network. Optionally a first
stage trains the rows alone (LoRA learning rate held at zero). Loss only on the target tokens.
bf16 autocast on CUDA, fp32 on CPU, same code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from semantic_ids.bundle import atomic_directory
from semantic_ids.decoding import ConstrainedDecoder
from semantic_ids.ids import IdScheme, SemanticId
from semantic_ids.trie import PrefixTrie
from training.eval.evaluate import model_rankings
from training.eval.metrics import ranking_metrics
from training.llm.batches import collate, encode_examples, epoch_batches
from training.llm.lora import LoraSettings, attach_lora
from training.llm.target_loss import LossKind, TargetLoss
from training.llm.tokens import TokenInit, add_semantic_tokens, initialise_new_rows, resize_for_tokens

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"


@dataclass(frozen=True)
class FinetuneConfig:
    lora: LoraSettings = field(default_factory=LoraSettings)
    token_init: TokenInit = "cluster"
    loss: LossKind = "restricted"  # see training/llm/target_loss.py
    batch_size: int = 16
    grad_accum: int = 1
    max_steps: int = 600  # optimizer steps
    lr_lora: float = 1e-3
    lr_tokens: float = 1e-2
    rows_only_steps: int = 0  # first stage: only the new token rows learn
    warmup_steps: int = 30
    min_lr_ratio: float = 0.1
    max_grad_norm: float = 1.0
    max_length: int = 64
    eval_every: int = 200  # optimizer steps; 0 = only at the end
    eval_queries: int = 48
    eval_beams: int = 10
    eval_loss_examples: int = 128
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lora": self.lora.to_dict()}

    def fingerprint(self, examples: Sequence[Mapping[str, Any]]) -> str:
        """What a checkpoint must match to be resumed: this config (bar logistics) and the same examples."""
        logistics = {"eval_every", "checkpoint_every", "device"}
        keep = {k: v for k, v in self.to_dict().items() if k not in logistics}
        digest = hashlib.sha256(json.dumps(keep, sort_keys=True).encode())
        for example in examples:
            digest.update(f"{example['prompt']}\t{example['target']}\n".encode())
        return digest.hexdigest()[:16]


@dataclass
class FinetuneResult:
    model: Any
    history: list[dict[str, Any]]
    steps: int
    examples_seen: int
    train_seconds: float
    train_examples: int = 0  # examples available to the loop (one pass = this many seen)

    @property
    def examples_per_second(self) -> float:
        return self.examples_seen / self.train_seconds if self.train_seconds else 0.0


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def prepare_model(
    base_dir: Path,
    scheme: IdScheme,
    items: Sequence[Mapping[str, Any]],
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


class Validator:
    """Loss on held-out examples and a quick constrained-decoding recall on held-out queries."""

    def __init__(
        self,
        tokenizer: Any,
        valid: Sequence[Mapping[str, Any]],
        items: Sequence[Mapping[str, Any]],
        scheme: IdScheme,
        config: FinetuneConfig,
    ) -> None:
        self.tokenizer, self.config = tokenizer, config
        self.loss_encoded = encode_examples(tokenizer, valid[: config.eval_loss_examples], config.max_length)
        queries = [v for v in valid if v["kind"] == "query"][: config.eval_queries]
        self.queries = [q["query"] for q in queries]
        self.sources = [q["item_id"] for q in queries]
        ids = [SemanticId(tuple(int(c) for c in item["semantic_id"])) for item in items]
        self.trie = PrefixTrie(ids, scheme)
        self.item_of = {sid: str(item["item_id"]) for sid, item in zip(ids, items, strict=True)}

    @torch.no_grad()
    def __call__(self, model: Any, device: torch.device) -> dict[str, float]:
        model.eval()
        loss_fn = target_loss_for(model, self.config)
        losses = []
        for start in range(0, len(self.loss_encoded), self.config.batch_size):
            batch = collate(
                self.loss_encoded[start : start + self.config.batch_size], self.tokenizer.pad_token_id
            )
            with _autocast(device):
                losses.append(float(loss_fn(model, {k: v.to(device) for k, v in batch.items()})))
        result = {"valid_loss": round(sum(losses) / len(losses), 4)} if losses else {}
        if self.queries:
            decoder = ConstrainedDecoder(model, self.tokenizer, self.trie)
            ranked, _ = model_rankings(decoder, self.queries, self.item_of, beams=self.config.eval_beams)
            metrics = ranking_metrics(ranked, self.sources)
            result |= {"valid_recall@1": metrics["recall@1"], "valid_recall@10": metrics["recall@10"]}
        model.train()
        return result


def target_loss_for(model: Any, config: FinetuneConfig) -> TargetLoss:
    """The loss over the new tokens that ``attach_lora`` made trainable."""
    new_ids = model.peft_config["default"].trainable_token_indices["embed_tokens"]
    return TargetLoss(new_ids, config.loss)


def _autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


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
    encoded = encode_examples(tokenizer, train, config.max_length)
    optimizer = _optimizer(model, config)
    loss_fn = target_loss_for(model, config)
    checkpoint = run_dir / CHECKPOINT_DIR if run_dir else None
    fingerprint = config.fingerprint(train)
    step, history = _resume(model, optimizer, checkpoint, fingerprint)
    stream = epoch_batches(encoded, config.batch_size, config.seed)
    for _ in range(step * config.grad_accum):  # replay the data order up to the resumed step
        next(stream)
    seen, started, valid_seconds = 0, time.perf_counter(), 0.0
    progress = tqdm(total=config.max_steps, initial=step, desc="fine-tune", unit="step")
    end = config.max_steps if stop_after is None else min(config.max_steps, step + stop_after)
    while step < end:
        _set_lr(optimizer, step, config)
        loss_sum = 0.0
        for _ in range(config.grad_accum):
            indices = next(stream)
            batch = {
                k: v.to(device)
                for k, v in collate([encoded[i] for i in indices], tokenizer.pad_token_id).items()
            }
            with _autocast(device):
                loss = loss_fn(model, batch) / config.grad_accum
            torch.autograd.backward(loss)
            loss_sum += float(loss.detach())
            seen += len(indices)
        torch.nn.utils.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad], config.max_grad_norm
        )
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        progress.update(1)
        progress.set_postfix(loss=f"{loss_sum:.3f}")
        record: dict[str, Any] = {"step": step, "loss": round(loss_sum, 4)}
        last = step == config.max_steps
        if validator is not None and (last or (config.eval_every and step % config.eval_every == 0)):
            valid_started = time.perf_counter()
            record |= validator(model, device)
            valid_seconds += time.perf_counter() - valid_started
            logger.info("step %d: %s", step, record)
        history.append(record)
        if checkpoint is not None and (step == end or step % config.checkpoint_every == 0):
            _save_checkpoint(model, optimizer, checkpoint, step, history, fingerprint)
    progress.close()
    seconds = time.perf_counter() - started - valid_seconds  # throughput counts training only
    model.eval()
    return FinetuneResult(
        model=model,
        history=history,
        steps=step,
        examples_seen=seen,
        train_seconds=seconds,
        train_examples=len(train),
    )


def _trainable_state(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}


def _save_checkpoint(
    model: Any,
    optimizer: torch.optim.Optimizer,
    folder: Path,
    step: int,
    history: list[dict[str, Any]],
    fingerprint: str,
) -> None:
    with atomic_directory(folder) as staging:
        save_file(_trainable_state(model), str(staging / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), staging / "optimizer.pt")
        state = {"step": step, "fingerprint": fingerprint, "history": history}
        (staging / "state.json").write_text(json.dumps(state) + "\n")


def _resume(
    model: Any, optimizer: torch.optim.Optimizer, folder: Path | None, fingerprint: str
) -> tuple[int, list[dict[str, Any]]]:
    if folder is None or not (folder / "state.json").is_file():
        return 0, []
    state = json.loads((folder / "state.json").read_text())
    if state["fingerprint"] != fingerprint:
        logger.warning("checkpoint in %s is from another config or data; starting afresh", folder)
        return 0, []
    weights = load_file(str(folder / "trainable.safetensors"))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value.to(params[name].device))
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    logger.info("resumed from %s at step %d", folder, state["step"])
    return int(state["step"]), list(state["history"])
