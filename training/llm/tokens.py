"""Add the semantic-ID special tokens to a tokenizer and give their new embedding rows a starting point.

Tokens go in ``IdScheme.all_tokens()`` order so each level's code tokens are contiguous ids (the
decoder relies on that). New rows start either at the mean embedding ("mean") or, for the RQ-VAE
levels, at the mean token embedding of the titles and genres of the items that carry the code
("cluster"): with tied embeddings that row is also the output vector, so a code starts out
pointing the same way as the words of its cluster.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Literal

import torch

from semantic_ids.causal_lm import heads_are_tied
from semantic_ids.ids import IdScheme, code_token
from training.data.items import CatalogueItem

logger = logging.getLogger(__name__)

TokenInit = Literal["mean", "cluster"]


def add_semantic_tokens(tokenizer: Any, scheme: IdScheme) -> list[int]:
    """Add every token of ``scheme`` to ``tokenizer`` (left padding) and return their ids, in order."""
    tokens = scheme.all_tokens()
    already = [t for t in tokens if t in tokenizer.get_vocab()]
    if already and len(already) != len(tokens):
        raise ValueError(f"the tokenizer already has {len(already)} of the {len(tokens)} semantic-ID tokens")
    if not already:
        tokenizer.add_tokens(tokens, special_tokens=True)
    ids: list[int] = tokenizer.convert_tokens_to_ids(tokens)
    if ids != list(range(ids[0], ids[0] + len(ids))):
        raise ValueError("the semantic-ID tokens did not get contiguous ids")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return ids


def _item_text_for_init(item: CatalogueItem) -> str:
    genres = item.fields.get("genres") or []
    return " ".join([item.title, *(str(g) for g in genres)])


@torch.no_grad()
def initialise_new_rows(
    model: Any,
    tokenizer: Any,
    scheme: IdScheme,
    *,
    strategy: TokenInit,
    items: Sequence[CatalogueItem] = (),
    rq_levels: int | None = None,
    seed: int = 0,
) -> None:
    """Write starting values into the rows of the scheme's tokens (the input and any untied head)."""
    embedding = model.get_input_embeddings().weight  # (vocab, hidden)
    first_new = tokenizer.convert_tokens_to_ids(scheme.all_tokens()[0])
    old = embedding[:first_new].float()
    mean = old.mean(dim=0)  # (hidden,)
    spread = (old - mean).norm(dim=1).median()  # typical distance of a real token from the mean
    generator = torch.Generator().manual_seed(seed)
    rows: dict[int, torch.Tensor] = {}
    for token_id in tokenizer.convert_tokens_to_ids(scheme.all_tokens()):
        noise = torch.randn(mean.shape, generator=generator)
        rows[token_id] = mean + 0.05 * spread * noise / noise.norm()
    if strategy == "cluster":
        rows.update(_cluster_rows(embedding, tokenizer, scheme, items, rq_levels, mean, spread))
    elif strategy != "mean":
        raise ValueError(f"unknown token init {strategy!r}: use 'mean' or 'cluster'")
    ids = torch.tensor(sorted(rows))
    values = torch.stack([rows[i] for i in sorted(rows)]).to(embedding.dtype)
    embedding[ids] = values
    if not heads_are_tied(model):
        model.get_output_embeddings().weight[ids] = values
    logger.info("initialised %d new token rows (%s)", len(rows), strategy)


def _cluster_rows(
    embedding: torch.Tensor,
    tokenizer: Any,
    scheme: IdScheme,
    items: Sequence[CatalogueItem],
    rq_levels: int | None,
    mean: torch.Tensor,
    spread: torch.Tensor,
) -> dict[int, torch.Tensor]:
    """Rows for RQ-VAE level codes: mean of the cluster's word embeddings, pushed out to a typical norm."""
    if not items:
        raise ValueError("token init 'cluster' needs the items with their semantic IDs")
    levels = scheme.levels - 1 if rq_levels is None else rq_levels  # the last level disambiguates
    text_vectors = []
    for item in items:
        token_ids = tokenizer(_item_text_for_init(item), add_special_tokens=False)["input_ids"]
        text_vectors.append(embedding[torch.tensor(token_ids or [0])].float().mean(dim=0))
    members: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        for level in range(levels):
            members[(level, item.sid.codes[level])].append(index)
    stacked = torch.stack(text_vectors)  # (items, hidden)
    centre = stacked.mean(dim=0)
    rows = {}
    for (level, code), indices in members.items():
        direction = stacked[indices].mean(dim=0) - centre
        token_id = tokenizer.convert_tokens_to_ids(code_token(level, code))
        rows[token_id] = mean + spread * direction / direction.norm().clamp(min=1e-8)
    return rows
