"""A real bundle over the 20-film tiny catalogue: tiny random Llama, a few quick training steps of the
training loop's model (``TopLayersModel``, both layers trainable).

Built with the training side's own helpers and ``write_bundle``, so the service tests load exactly
what the pipeline writes. The few steps teach the model to write an item's ID for its title, enough
for tests to tell a trained ranking from a random one. ``dense=True`` adds item vectors from the tiny
hashing encoder (``tests.helpers.tiny_encoder``), which the loader then needs as its query encoder;
``rqvae=True`` an RQ-VAE over those vectors with the tiny scheme's codebooks, so the bundle can take new
items (catalogue updates).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from semantic_ids.bundle import FusionParams, Manifest
from semantic_ids.causal_lm import resize_for_tokens
from semantic_ids.decoding import build_prompt
from semantic_ids.ids import SEM_END, SemanticId
from semantic_ids.item_text import render_row
from semantic_ids.rqvae import RQVAEConfig, SemanticRQVAE, save_rqvae
from tests.helpers.tiny_catalogue import TINY_ID_REPORT, TINY_SCHEME, tiny_catalogue, tiny_items
from tests.helpers.tiny_encoder import HashingEncoder
from tests.helpers.tiny_models import make_tiny_base_model
from training.bundle_writer import BundleInputs, write_bundle
from training.llm.batches import collate, encode_examples
from training.llm.finetune_config import FinetuneConfig
from training.llm.tokens import add_semantic_tokens, initialise_new_rows
from training.llm.top_layers import TopLayersModel

TRAINED = FinetuneConfig(trainable_layers=2)  # both tiny layers: what the bundle records and carries


@dataclass(frozen=True)
class TinyBundle:
    bundle_dir: Path
    base_models_dir: Path
    manifest: Manifest
    items: list[dict[str, Any]]


def _title_examples(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each item's title -> its ID: the codes and [SEM_END] are the targets."""
    examples = []
    for item in items:
        codes = "".join(SemanticId.from_codes(item["semantic_id"]).code_tokens())
        examples.append({"prompt": build_prompt(item["title"]), "target": codes + SEM_END, "kind": "query"})
    return examples


def _train(lm: Any, tokenizer: Any, new_ids: list[int], items: list[dict[str, Any]], steps: int) -> Any:
    """``steps`` full-batch AdamW steps over every title; the exported causal LM (untied head)."""
    model = TopLayersModel(lm, TRAINED.trainable_layers, new_ids)
    batch = collate(
        encode_examples(tokenizer, _title_examples(items), TRAINED.max_length), tokenizer.pad_token_id
    )
    optimiser = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        model(batch).backward()
        optimiser.step()
        optimiser.zero_grad()
    return model.export().eval()


def _tiny_rqvae(vectors: torch.Tensor, path: Path) -> Path:
    """An RQ-VAE of the tiny scheme's shape (2 levels x 4 codes), its codebooks fitted on ``vectors``."""
    config = RQVAEConfig(
        input_dim=vectors.shape[1], hidden_dims=(32,), latent_dim=8, levels=2, codebook_size=4, kmeans_iters=5
    )
    model = SemanticRQVAE.from_config(config).train()
    with torch.no_grad():
        for _ in range(3):  # k-means initialisation, then EMA updates of the codebooks
            model(vectors)
    save_rqvae(model.eval(), config, path)
    return path


def make_tiny_bundle(
    root: Path,
    *,
    steps: int = 60,
    seed: int = 0,
    dense: bool = False,
    fusion: FusionParams | None = None,
    rqvae: bool = False,
) -> TinyBundle:
    torch.manual_seed(seed)
    base_models_dir = root / "base_models"
    base_dir = make_tiny_base_model(base_models_dir)
    items = tiny_items()
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    new_ids = add_semantic_tokens(tokenizer, TINY_SCHEME)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    resize_for_tokens(model, tokenizer)
    initialise_new_rows(model, tokenizer, TINY_SCHEME, strategy="mean")
    trained = _train(model, tokenizer, new_ids, items, steps)
    encoder = HashingEncoder()
    vectors = encoder.encode([render_row(item) for item in items]) if dense or rqvae else None
    rqvae_path = _tiny_rqvae(torch.from_numpy(vectors), root / "rqvae.safetensors") if rqvae else None
    dense = dense or rqvae  # a bundle takes new items only with its items' vectors
    inputs = BundleInputs(
        profile="tiny",
        items=tiny_catalogue(),
        id_report=TINY_ID_REPORT,
        base_model_dir=base_dir,
        base_model_source="tests.helpers.tiny_models",
        embedding_model=encoder.model if dense else "none",
        embedding_dimensions=encoder.dimensions if dense else 8,
        rqvae_path=rqvae_path,
        lora=TRAINED.adapter(),
        training={"steps": steps},
        evaluation={},
        fusion=fusion,
        item_embeddings=vectors if dense else None,
    )
    bundle_dir = root / "bundles" / "tiny"
    manifest = write_bundle(
        bundle_dir, model=trained, tokenizer=tokenizer, new_token_ids=new_ids, inputs=inputs
    )
    return TinyBundle(bundle_dir=bundle_dir, base_models_dir=base_models_dir, manifest=manifest, items=items)
