"""Write the artifact bundle (semantic_ids/bundle.py describes the layout) atomically.

The adapter holds LoRA weights only: peft's trainable-token rows are stripped from it and saved in
``new_token_rows.safetensors`` instead, because the loader writes those rows into the resized base
embedding itself and must not get them a second time from the adapter.

The run's item embeddings, when given, go in as the dense index (hybrid's third candidate source);
``add_dense_index`` puts them into a bundle written without them.
"""

from __future__ import annotations

import copy
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
from peft import get_peft_model_state_dict
from safetensors.torch import save_file

from semantic_ids.bundle import (
    ADAPTER_DIR,
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


def new_token_rows(peft_model: Any, new_token_ids: Sequence[int]) -> dict[str, torch.Tensor]:
    """The trained rows of the new tokens, read through the wrapped layers (so peft's values are used)."""
    ids = torch.tensor(list(new_token_ids), dtype=torch.long)
    base = peft_model.get_base_model() if hasattr(peft_model, "get_base_model") else peft_model
    embed = base.get_input_embeddings()
    device = next(embed.parameters()).device
    with torch.no_grad():
        rows = {"token_ids": ids, "embed_tokens": embed(ids.to(device)).float().cpu().contiguous()}
        if not heads_are_tied(base):
            head = base.get_output_embeddings()
            hidden = rows["embed_tokens"].shape[1]
            eye = torch.eye(hidden, device=device, dtype=head.weight.dtype)
            rows["lm_head"] = head(eye)[:, ids.to(device)].T.float().cpu().contiguous()  # (n, hidden)
    return rows


def save_lora_adapter(peft_model: Any, adapter_dir: Path, base_model_name: str) -> None:
    """Save only the LoRA matrices and a config without ``trainable_token_indices``."""
    state = get_peft_model_state_dict(peft_model, save_embedding_layers=False)
    lora_only = {k: v.detach().float().cpu().contiguous().clone() for k, v in state.items() if "lora_" in k}
    if not lora_only:
        raise ValueError("the model carries no LoRA weights to save")
    config = copy.deepcopy(peft_model.peft_config["default"])
    config.trainable_token_indices = None
    config.base_model_name_or_path = base_model_name
    adapter_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(adapter_dir))
    save_file(lora_only, str(adapter_dir / "adapter_model.safetensors"), metadata={"format": "pt"})


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
    bundle_dir: Path, *, peft_model: Any, tokenizer: Any, new_token_ids: Sequence[int], inputs: BundleInputs
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
        lexical = LexicalIndex.build(rows, manifest.catalogue.content_hash, inputs.framing_text)
        lexical.save(staging / LEXICAL_DIR)
        if vectors is not None:
            dense = DenseIndex.build(vectors, rows, manifest.catalogue.content_hash, inputs.embedding_model)
            dense.save(staging / DENSE_DIR)
        tokenizer.save_pretrained(str(staging / TOKENIZER_DIR))
        if hasattr(peft_model, "peft_config"):
            save_lora_adapter(peft_model, staging / ADAPTER_DIR, manifest.base_model.name)
        else:
            save_file(finetuned_layers(peft_model, inputs.lora), str(staging / FINETUNED_LAYERS))
        save_file(new_token_rows(peft_model, new_token_ids), str(staging / NEW_TOKEN_ROWS))
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
