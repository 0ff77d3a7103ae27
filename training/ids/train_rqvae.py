"""Training the RQ-VAE on item embeddings: an explicit loop, seeded so that the same embeddings and
config always give the same codes."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from semantic_ids.rqvae import RQVAEConfig, RQVAEError, SemanticRQVAE
from training.ids.code_stats import collision_rate, level_stats

logger = logging.getLogger(__name__)

_INFERENCE_BATCH = 4096


@torch.no_grad()
def encode_items(model: SemanticRQVAE, embeddings: np.ndarray) -> dict[str, np.ndarray]:
    """Codes (n, levels), latents and quantised latents (n, latent_dim) of every item, in eval mode."""
    was_training = model.training
    model.eval()
    codes, latents, quantized = [], [], []
    for start in range(0, len(embeddings), _INFERENCE_BATCH):
        batch = torch.from_numpy(embeddings[start : start + _INFERENCE_BATCH])
        latent = model.encode(batch)
        quantized_batch, codes_batch, _ = model.quantize(latent)
        codes.append(codes_batch)
        latents.append(latent)
        quantized.append(quantized_batch)
    model.train(was_training)
    return {
        "codes": torch.cat(codes).numpy().astype(np.int64),
        "latents": torch.cat(latents).numpy(),
        "quantized": torch.cat(quantized).numpy(),
    }


def _epoch_stats(
    codes: np.ndarray, codebook_size: int, epoch: int, losses: dict[str, float]
) -> dict[str, Any]:
    levels = level_stats(codes, codebook_size)
    return {
        "epoch": epoch,
        **{name: round(value, 5) for name, value in losses.items()},
        "usage": [round(level["usage"], 4) for level in levels],
        "perplexity": [round(level["perplexity"], 2) for level in levels],
        "collision_rate": round(collision_rate(codes), 5),
    }


def _train_epoch(
    model: SemanticRQVAE,
    data: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    order: torch.Tensor,
    batch_size: int,
) -> tuple[dict[str, float], np.ndarray]:
    """One pass over ``data`` in ``order``; mean losses, and the codes each item got on the way.

    Stats come from these codes rather than from a second, eval-mode pass over the catalogue, which
    would cost as much as the epoch itself (the final IDs are re-encoded in eval mode anyway).
    """
    model.train()
    totals = {"reconstruction": 0.0, "commitment": 0.0}
    codes = torch.zeros((len(data), model.levels), dtype=torch.int64)  # (n, levels)
    for batch_index in torch.split(order, batch_size):
        _, batch_codes, losses = model(data[batch_index])
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        schedule.step()
        codes[batch_index] = batch_codes.detach()
        for name in totals:
            totals[name] += losses[name].item() * len(batch_index) / len(data)
    return totals, codes.numpy()


@torch.no_grad()
def _init_codebooks(model: SemanticRQVAE, data: torch.Tensor) -> None:
    # k-means init runs on the first batch the quantiser sees: give it the whole catalogue (up to a
    # cap) rather than one small batch, so every level starts with centroids spread over all items.
    model.train()
    sample = data[torch.randperm(len(data))[:16384]]
    model(sample)


def train_rqvae(
    embeddings: np.ndarray, config: RQVAEConfig, *, show_progress: bool = True
) -> tuple[SemanticRQVAE, list[dict[str, Any]]]:
    """Train on ``embeddings`` (n, input_dim float32); returns the model (eval mode) and per-epoch stats."""
    if embeddings.ndim != 2 or embeddings.shape[1] != config.input_dim:
        raise RQVAEError(f"expected embeddings of shape (n, {config.input_dim}), got {embeddings.shape}")
    if len(embeddings) < config.codebook_size:
        raise RQVAEError(
            f"{len(embeddings)} items cannot fill a codebook of {config.codebook_size}; use a smaller one"
        )
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    if config.train_sample and len(embeddings) > config.train_sample:
        chosen = np.sort(
            np.random.default_rng(config.seed).choice(len(embeddings), config.train_sample, replace=False)
        )
        embeddings = embeddings[chosen]
        logger.info("rq-vae: training on a sample of %d items", config.train_sample)
    data = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
    model = SemanticRQVAE.from_config(config)
    _init_codebooks(model, data)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(data) / config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch)
    history: list[dict[str, Any]] = []
    epochs = tqdm(range(1, config.epochs + 1), desc="rq-vae", unit="epoch", disable=not show_progress)
    for epoch in epochs:
        order = torch.randperm(len(data), generator=generator)
        losses, codes = _train_epoch(model, data, optimizer, schedule, order, config.batch_size)
        stats = _epoch_stats(codes, config.codebook_size, epoch, losses)
        history.append(stats)
        epochs.set_postfix(
            recon=stats["reconstruction"], usage=stats["usage"], collide=stats["collision_rate"]
        )
        logger.debug("rq-vae epoch %s", stats)
    logger.info("rq-vae trained: %s", history[-1] if history else "no epochs")
    return model.eval(), history
