"""Write the artifact bundle (semantic_ids/bundle.py describes the layout) atomically.

The model is what the training loop exports: a plain causal LM whose fine-tuned top layers and final norm
go into ``finetuned_layers.safetensors`` and whose new tokens' rows go into ``new_token_rows.safetensors``
(the loader writes those into the resized base embedding and head). The service still loads the LoRA
``adapter/`` of bundles written by the retired LoRA-on-every-layer loop; nothing writes those any more.

The run's item embeddings, when given, go in as the dense index (hybrid's third candidate source);
``add_dense_index`` puts them into a bundle written without them.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from semantic_ids.bundle import (
    CATALOGUE,
    DENSE_DIR,
    EVALUATION,
    FINETUNED_LAYERS,
    LEXICAL_DIR,
    MANIFEST,
    NEW_TOKEN_ROWS,
    RQVAE_WEIGHTS,
    SCHEMA_VERSION,
    TOKENIZER_DIR,
    BaseModelInfo,
    BundleMismatch,
    CatalogueInfo,
    EmbeddingInfo,
    FusionParams,
    Manifest,
    RetrievalInfo,
    SemanticIdInfo,
    TokenInfo,
    atomic_directory,
    base_weights_sha256,
    catalogue_hash,
    file_sha256,
    read_catalogue,
    read_manifest,
    write_manifest,
)
from semantic_ids.causal_lm import heads_are_tied
from semantic_ids.dense import DenseIndex
from semantic_ids.ids import REC, SEM_END, SEM_START, IdScheme
from semantic_ids.lexical import LexicalIndex
from training.data.items import CatalogueItem
from training.io import write_jsonl

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundleInputs:
    """Everything a bundle records besides the trained model and tokenizer."""

    profile: str
    items: Sequence[CatalogueItem]  # with their semantic IDs
    id_report: Mapping[str, Any]  # rq_levels, codebook_sizes, collision_rate, ...
    base_model_dir: Path
    base_model_source: str
    embedding_model: str
    embedding_dimensions: int
    rqvae_path: Path | None
    lora: Mapping[str, Any]
    training: Mapping[str, Any]
    evaluation: Mapping[str, Any]
    fusion: FusionParams | None = None  # tuned hybrid parameters; None: the defaults
    # (items, dimensions) vectors of embedding_model, rows in ``items`` order: the dense index; None: none
    item_embeddings: np.ndarray | None = None
    framing_text: Sequence[str] = ()  # the query configuration's framing words, left out of lexical queries


def new_token_rows(model: Any, new_token_ids: Sequence[int]) -> dict[str, torch.Tensor]:
    """The trained rows of the new tokens: their input rows, and their head rows when the head is untied."""
    ids = torch.tensor(list(new_token_ids), dtype=torch.long)

    def rows_of(module: Any) -> torch.Tensor:
        weight: torch.Tensor = module.weight.detach()
        return weight[ids.to(weight.device)].float().cpu().contiguous()  # (new tokens, hidden)

    rows = {"token_ids": ids, "embed_tokens": rows_of(model.get_input_embeddings())}
    if not heads_are_tied(model):
        rows["lm_head"] = rows_of(model.get_output_embeddings())
    return rows


def finetuned_layers(model: Any, method: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The top ``trainable_layers`` decoder layers and the final norm of a top-layers model."""
    count = int(model.config.num_hidden_layers)
    first = count - int(method["trainable_layers"])
    prefixes = ("model.norm.", *(f"model.layers.{i}." for i in range(first, count)))
    return {
        name: value.detach().float().cpu().contiguous().clone()
        for name, value in model.state_dict().items()
        if name.startswith(prefixes)
    }


def _catalogue_rows(items: Sequence[CatalogueItem], scheme: IdScheme) -> list[dict[str, Any]]:
    rows, seen = [], set()
    for item in items:
        semantic_id = scheme.validate(item.sid)
        if semantic_id in seen:
            raise ValueError(f"semantic ID {semantic_id.compact} is carried by more than one item")
        seen.add(semantic_id)
        rows.append(item.to_dict())
    return rows


def build_manifest(inputs: BundleInputs, rows: list[dict[str, Any]], added_count: int) -> Manifest:
    content_hash = catalogue_hash(rows)
    created = datetime.now(UTC)
    report = inputs.id_report
    return Manifest(
        schema_version=SCHEMA_VERSION,
        bundle_id=f"{inputs.profile}-{created:%Y%m%dT%H%M%SZ}-{content_hash[:8]}",
        created_at=created,
        catalogue=CatalogueInfo(content_hash=content_hash, item_count=len(rows), profile=inputs.profile),
        embedding=EmbeddingInfo(model=inputs.embedding_model, dimensions=inputs.embedding_dimensions),
        semantic_ids=SemanticIdInfo(
            rq_levels=int(report["rq_levels"]),
            codebook_sizes=tuple(int(k) for k in report["codebook_sizes"]),
            collision_rate=float(report["collision_rate"]),
        ),
        base_model=BaseModelInfo(
            name=inputs.base_model_dir.name,
            source=inputs.base_model_source,
            weights_sha256=base_weights_sha256(inputs.base_model_dir),
        ),
        tokens=TokenInfo(sem_start=SEM_START, sem_end=SEM_END, rec=REC, added_count=added_count),
        lora=dict(inputs.lora),
        training=dict(inputs.training),
        evaluation=dict(inputs.evaluation),
        retrieval=RetrievalInfo(
            lexical_index=LEXICAL_DIR,
            dense_index=None if inputs.item_embeddings is None else DENSE_DIR,
            fusion=inputs.fusion or FusionParams(),
        ),
    )


def write_bundle(
    bundle_dir: Path, *, model: Any, tokenizer: Any, new_token_ids: Sequence[int], inputs: BundleInputs
) -> Manifest:
    """Write the bundle into a temporary sibling and rename it to ``bundle_dir``; return its manifest."""
    scheme = IdScheme(tuple(int(k) for k in inputs.id_report["codebook_sizes"]))
    if tokenizer.convert_tokens_to_ids(scheme.all_tokens()) != list(new_token_ids):
        raise ValueError("new_token_ids are not the tokenizer's ids of the scheme's tokens, in order")
    rows = _catalogue_rows(inputs.items, scheme)
    vectors = inputs.item_embeddings
    if vectors is not None and vectors.shape != (len(rows), inputs.embedding_dimensions):
        raise ValueError(
            f"item embeddings of shape {vectors.shape} for {len(rows)} items "
            f"of {inputs.embedding_dimensions} dimensions"
        )
    manifest = build_manifest(inputs, rows, added_count=len(new_token_ids))
    with atomic_directory(bundle_dir) as staging:
        write_jsonl(rows, staging / CATALOGUE)
        written = manifest.catalogue.model_copy(update={"file_sha256": file_sha256(staging / CATALOGUE)})
        manifest = manifest.model_copy(update={"catalogue": written})
        lexical = LexicalIndex.build(rows, manifest.catalogue.content_hash, inputs.framing_text)
        lexical.save(staging / LEXICAL_DIR)
        if vectors is not None:
            dense = DenseIndex.build(vectors, rows, manifest.catalogue.content_hash, inputs.embedding_model)
            dense.save(staging / DENSE_DIR)
        tokenizer.save_pretrained(str(staging / TOKENIZER_DIR))
        save_file(finetuned_layers(model, inputs.lora), str(staging / FINETUNED_LAYERS))
        save_file(new_token_rows(model, new_token_ids), str(staging / NEW_TOKEN_ROWS))
        if inputs.rqvae_path is not None:
            shutil.copyfile(inputs.rqvae_path, staging / RQVAE_WEIGHTS)
        (staging / EVALUATION).write_text(json.dumps(dict(inputs.evaluation), indent=2) + "\n")
        (staging / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
    logger.info("wrote bundle %s to %s", manifest.bundle_id, bundle_dir)
    return manifest


def add_dense_index(bundle_dir: Path, vectors: np.ndarray, item_ids: Sequence[str], model: str) -> Manifest:
    """Put item vectors (rows: ``item_ids``) into a bundle written without them, as its dense index, and
    mark its manifest (schema 3); ``BundleMismatch`` unless they cover exactly the bundle's catalogue."""
    manifest = read_manifest(bundle_dir)
    rows = list(read_catalogue(bundle_dir))
    row_of = {item_id: index for index, item_id in enumerate(item_ids)}
    missing = [str(row["item_id"]) for row in rows if str(row["item_id"]) not in row_of]
    if missing or len(row_of) != len(rows) or len(item_ids) != vectors.shape[0]:
        raise BundleMismatch(
            f"{vectors.shape[0]} item vectors for {len(item_ids)} ids do not cover bundle "
            f"{manifest.bundle_id}'s {len(rows)} items ({len(missing)} missing, e.g. {missing[:3]}): "
            "use the run it was built from"
        )
    ordered = vectors[[row_of[str(row["item_id"])] for row in rows]]
    index = DenseIndex.build(ordered, rows, manifest.catalogue.content_hash, model)
    with atomic_directory(bundle_dir / DENSE_DIR) as staging:
        index.save(staging)
    retrieval = manifest.retrieval or RetrievalInfo(lexical_index=None)
    updated = manifest.model_copy(
        update={
            "schema_version": SCHEMA_VERSION,
            "embedding": EmbeddingInfo(model=model, dimensions=index.dimensions),
            "retrieval": retrieval.model_copy(update={"dense_index": DENSE_DIR}),
        }
    )
    write_manifest(bundle_dir, updated)
    logger.info("added %d item vectors (%s) to bundle %s", len(index), model, manifest.bundle_id)
    return updated
