"""A top-layers bundle's Llama read straight from its files into ``LlamaWeights``: what the service
searches with, without transformers' model classes (importing them and building the model took 2.76 s of a
4.1 s load on a 2-core AVX2 EPYC, bench/HISTORY.md).

The steps ``model_loading`` takes on a transformers model, taken on tensors: the base weights (only the
layers the bundle keeps are read), the embedding grown to the tokenizer with the new tokens' rows written,
the head given its own rows where the bundle has them, the frozen layers training dropped removed and those
above renumbered, the fine-tuned layers and final norm in place. The checks are shared with that path, and
tests hold both to the same logits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from semantic_ids.bundle import BASE_WEIGHTS, FINETUNED_LAYERS, NEW_TOKEN_ROWS, BundleMismatch, Manifest
from semantic_ids.llama_body import LlamaWeights, unsupported_llama_config

_EMBED, _HEAD = "model.embed_tokens.weight", "lm_head.weight"


def plain_llama_config(bundle_dir: Path, base_dir: Path) -> dict[str, Any] | None:
    """The base model's ``config.json`` where this bundle can be read as ``LlamaWeights``: a plain Llama
    with fine-tuned top layers (a LoRA bundle of the retired loop is merged by peft instead); else None."""
    if not (bundle_dir / FINETUNED_LAYERS).is_file():
        return None
    config_file = base_dir / "config.json"
    if not config_file.is_file():
        raise BundleMismatch(f"base model {base_dir} has no config.json (run `semid prepare-base-model`)")
    config: dict[str, Any] = json.loads(config_file.read_text())
    return config if unsupported_llama_config(config) is None else None


def read_bundle_llama(
    bundle_dir: Path,
    base_dir: Path,
    manifest: Manifest,
    config: dict[str, Any],
    tokens: int,
    *,
    dtype: torch.dtype,
    device: torch.device,
) -> LlamaWeights:
    """The served model's weights: ``tokens`` is the bundle tokenizer's size, ``config`` the base's."""
    count = int(config["num_hidden_layers"])
    first_dropped, dropped = dropped_layers(manifest, count)
    # Old layer index -> new one: the layers above the dropped ones move down, as ``drop_decoder_layers``.
    kept = {
        old: new
        for new, old in enumerate(i for i in range(count) if not first_dropped <= i < first_dropped + dropped)
    }
    state: dict[str, torch.Tensor] = {}
    with safe_open(str(base_dir / BASE_WEIGHTS), framework="pt") as weights:
        for name in weights.keys():  # noqa: SIM118 (a safetensors file, not a dict)
            renamed = _renumbered(name, kept)
            if renamed is not None:
                state[renamed] = weights.get_tensor(name)
    embed = state.get(_EMBED)
    if embed is None:
        raise BundleMismatch(f"base model {base_dir}: {BASE_WEIGHTS} has no {_EMBED}")
    size = max(tokens, embed.shape[0])
    ids, rows = new_token_rows(bundle_dir, manifest, size)
    state[_EMBED] = _grown(embed, size)
    state[_EMBED][ids] = rows["embed_tokens"].to(embed.dtype)
    if _HEAD in state:  # a base whose head is its own
        state[_HEAD] = _grown(state[_HEAD], size)
    if "lm_head" in rows:  # the new tokens read one row and write another: the head gets its own copy
        head = state.get(_HEAD, state[_EMBED]).clone()
        head[ids] = rows["lm_head"].to(head.dtype)
        state[_HEAD] = head
    layers = load_file(str(bundle_dir / FINETUNED_LAYERS))
    check_finetuned_names(layers, {name: value.shape for name, value in state.items()}, manifest)
    state.update(layers)
    state = {name: value.to(device=device, dtype=dtype) for name, value in state.items()}
    try:
        return LlamaWeights.of_state_dict({**config, "num_hidden_layers": len(kept)}, state)
    except ValueError as error:
        raise BundleMismatch(f"bundle {manifest.bundle_id}: its model cannot be read: {error}") from error


def dropped_layers(manifest: Manifest, count: int) -> tuple[int, int]:
    """(first, how many): the frozen layers training removed below the trained ones, of ``count``."""
    dropped, trained = int(manifest.lora.get("dropped_layers", 0)), int(manifest.lora["trainable_layers"])
    if dropped and trained + dropped > count:
        raise BundleMismatch(
            f"bundle {manifest.bundle_id}: trained {trained} layers above {dropped} dropped ones, but the "
            f"base model has {count} layers"
        )
    return count - trained - dropped, dropped


def new_token_rows(
    bundle_dir: Path, manifest: Manifest, size: int
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The new tokens' ids and their rows (``embed_tokens``, and ``lm_head`` where the head is untied),
    checked against the manifest and the grown vocabulary of ``size`` rows."""
    rows = load_file(str(bundle_dir / NEW_TOKEN_ROWS))
    ids = rows["token_ids"].long()
    if len(ids) != manifest.tokens.added_count or int(ids.max()) >= size:
        raise BundleMismatch(
            f"bundle {manifest.bundle_id}: {NEW_TOKEN_ROWS} has {len(ids)} rows up to id {int(ids.max())}; "
            f"the manifest adds {manifest.tokens.added_count} tokens to a vocabulary of {size}"
        )
    return ids, rows


def check_finetuned_names(
    layers: dict[str, torch.Tensor], shapes: dict[str, torch.Size], manifest: Manifest
) -> None:
    """Refuse fine-tuned weights the model has no place for (another base, another layer count)."""
    foreign = [name for name, value in layers.items() if name not in shapes or shapes[name] != value.shape]
    if foreign:
        raise BundleMismatch(
            f"bundle {manifest.bundle_id}: {FINETUNED_LAYERS} has weights the base model lacks: "
            f"{', '.join(foreign[:3])}"
        )


def _renumbered(name: str, kept: dict[int, int]) -> str | None:
    """A base weight's name in the shortened model, or None for a dropped layer's."""
    if not name.startswith("model.layers."):
        return name
    index, rest = name.removeprefix("model.layers.").split(".", 1)
    new = kept.get(int(index))
    return None if new is None else f"model.layers.{new}.{rest}"


def _grown(rows: torch.Tensor, size: int) -> torch.Tensor:
    """``rows`` with zero rows below up to ``size``: every one the bundle adds is written next."""
    grown = rows.new_zeros((size, rows.shape[1]))
    grown[: rows.shape[0]] = rows
    return grown
