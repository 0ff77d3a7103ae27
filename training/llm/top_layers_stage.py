"""Building and watching a top-layers model for the pipeline: the glue around ``train_top_layers``."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from semantic_ids.causal_lm import resize_for_tokens
from semantic_ids.decoding import ConstrainedDecoder
from semantic_ids.ids import IdScheme
from semantic_ids.trie import PrefixTrie
from training.data.items import CatalogueItem
from training.distributed import Place
from training.eval.evaluate import model_rankings
from training.eval.metrics import ranking_metrics
from training.llm.finetune_config import FinetuneConfig, FinetuneResult
from training.llm.query_generator import QueryGenerator
from training.llm.template_spec import QueryTemplates
from training.llm.tokens import add_semantic_tokens, initialise_new_rows
from training.llm.top_layers import TopLayersModel
from training.llm.train_top_layers import Watch, train_top_layers

WATCH_TRAINING_QUERIES = 100  # training phrasings re-asked at every evaluation: memorisation


def prepare_top_layers(
    base_dir: Path, scheme: IdScheme, items: Sequence[CatalogueItem], config: FinetuneConfig, rq_levels: int
) -> tuple[TopLayersModel, Any, list[int]]:
    """Base model + tokenizer with the semantic-ID tokens and initialised rows, split for training."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    new_ids = add_semantic_tokens(tokenizer, scheme)
    lm = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    resize_for_tokens(lm, tokenizer)
    initialise_new_rows(
        lm, tokenizer, scheme, strategy=config.token_init, items=items, rq_levels=rq_levels, seed=config.seed
    )
    lora = config.lora if config.method == "top_layers_lora" else None
    model = TopLayersModel(
        lm, config.trainable_layers, new_ids, lora=lora, dropped_layers=config.dropped_layers
    )
    return model, tokenizer, new_ids


def _watch(
    tokenizer: Any,
    items: Sequence[CatalogueItem],
    scheme: IdScheme,
    held_out: Sequence[Mapping[str, Any]],
    training: Sequence[Mapping[str, Any]],
    beams: int,
) -> Watch:
    """Recall@10 of the exported model on the training and the held-out phrasings."""
    trie = PrefixTrie([item.sid for item in items], scheme)
    item_of = {item.sid: item.item_id for item in items}
    samples = [(name, sample) for name, sample in (("train", training), ("heldout", held_out)) if sample]

    def watch(lm: Any) -> dict[str, float]:
        decoder, figures = ConstrainedDecoder(lm, tokenizer, trie), {}
        for name, sample in samples:
            queries = [q["query"] for q in sample]
            ranked, _ = model_rankings(decoder, queries, item_of, beams=beams, batch_size=16)
            recall = ranking_metrics(ranked, [q["item_id"] for q in sample])["recall@10"]
            figures[f"{name}_recall@10"] = round(recall, 4)
        return figures

    return watch


def train_top_layers_model(
    base_dir: Path,
    scheme: IdScheme,
    items: Sequence[CatalogueItem],
    rq_levels: int,
    held_out: Sequence[Mapping[str, Any]],
    config: FinetuneConfig,
    seed: int,
    templates: QueryTemplates | None = None,
    place: Place | None = None,
) -> tuple[FinetuneResult, Any, list[int]]:
    """Train on fresh queries phrased by ``templates`` (the catalogue's query configuration); ``place``:
    this process's rank under ``torchrun`` [alone]."""
    model, tokenizer, new_ids = prepare_top_layers(base_dir, scheme, items, config, rq_levels)
    generator = QueryGenerator(items, config.queries_per_item, seed, templates)
    training = generator.first_chunk_sample(
        lambda first: random.Random(seed).sample(first, min(WATCH_TRAINING_QUERIES, len(first)))
    )
    watch = _watch(tokenizer, items, scheme, held_out, training, config.eval_beams)
    result = train_top_layers(model, tokenizer, generator, config, watch, place=place)
    epochs = 1 + max((record.get("epoch", 0) for record in result.history), default=0)
    result.history[-1]["exposures_per_item"] = generator.per_item * epochs
    return result, tokenizer, new_ids
