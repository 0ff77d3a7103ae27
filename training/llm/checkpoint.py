"""The resumable state of a fine-tuning run: trainable weights, optimiser state, step and history.

A checkpoint is resumed only when its fingerprint (config and examples) matches the run's.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from training.io import atomic_directory

logger = logging.getLogger(__name__)


def _trainable_state(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(
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


def resume(
    model: Any, optimizer: torch.optim.Optimizer, folder: Path | None, fingerprint: str
) -> tuple[int, list[dict[str, Any]]]:
    """(step, history) restored from ``folder`` into ``model`` and ``optimizer``; (0, []) when none fits."""
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
