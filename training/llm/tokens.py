"""Add the semantic-ID special tokens to a tokenizer and give their new embedding rows a starting point.

Tokens go in ``IdScheme.all_tokens()`` order so each level's code tokens are contiguous ids (the
decoder relies on that). New rows start either at the mean embedding ("mean") or, for the RQ-VAE
levels, at the mean token embedding of the titles and genres of the items that carry the code
("cluster"): with tied embeddings that row is also the output vector, so a code starts out
pointing the same way as the words of its cluster.
"""

from __future__ import annotations

import logging
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


_INIT_BLOCK = 4096  # items whose token embeddings are gathered at once


def _cluster_rows(
    embedding: torch.Tensor,
    tokenizer: Any,
    scheme: IdScheme,
    items: Sequence[CatalogueItem],
    rq_levels: int | None,
    mean: torch.Tensor,
    spread: torch.Tensor,
) -> dict[int, torch.Tensor]:
    """Rows for RQ-VAE level codes: mean of the cluster's word embeddings, pushed out to a typical norm.

    Each item's vector (the mean embedding of its text's tokens) is summed into its codes' clusters a
    block of items at a time, the texts tokenised in one batch: a million items held as vectors at once
    took 2.3 GB, and one by one over a minute."""
    if not items:
        raise ValueError("token init 'cluster' needs the items with their semantic IDs")
    levels = scheme.levels - 1 if rq_levels is None else rq_levels  # the last level disambiguates
    encoded = tokenizer([_item_text_for_init(item) for item in items], add_special_tokens=False)["input_ids"]
    hidden = embedding.shape[1]
    sums = [
        torch.zeros(size, hidden) for size in scheme.codebook_sizes[:levels]
    ]  # per level: (codes, hidden)
    counts = [torch.zeros(size) for size in scheme.codebook_sizes[:levels]]
    total = torch.zeros(hidden)
    for start in range(0, len(items), _INIT_BLOCK):
        block = [ids or [0] for ids in encoded[start : start + _INIT_BLOCK]]
        lengths = torch.tensor([len(ids) for ids in block])
        owner = torch.repeat_interleave(torch.arange(len(block)), lengths)
        tokens = embedding[torch.tensor([token for ids in block for token in ids])].float()
        vectors = torch.zeros(len(block), hidden).index_add_(0, owner, tokens) / lengths[:, None]
        total += vectors.sum(dim=0)
        codes = torch.tensor([item.sid.codes[:levels] for item in items[start : start + _INIT_BLOCK]])
        for level in range(levels):
            sums[level].index_add_(0, codes[:, level], vectors)
            counts[level] += torch.bincount(codes[:, level], minlength=len(counts[level])).float()
    centre = total / len(items)
    rows = {}
    for level in range(levels):
        for code in torch.nonzero(counts[level]).flatten().tolist():
            direction = sums[level][code] / counts[level][code] - centre
            token_id = tokenizer.convert_tokens_to_ids(code_token(level, code))
            rows[token_id] = mean + spread * direction / direction.norm().clamp(min=1e-8)
    return rows
