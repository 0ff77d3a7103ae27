"""A real bundle over the 20-film tiny catalogue: tiny random Llama, LoRA, a few quick training steps.

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
from training.llm.lora import LoraSettings, attach_lora
from training.llm.tokens import add_semantic_tokens, initialise_new_rows


@dataclass(frozen=True)
class TinyBundle:
    bundle_dir: Path
    base_models_dir: Path
    manifest: Manifest
    items: list[dict[str, Any]]


def _training_texts(items: list[dict[str, Any]]) -> list[str]:
    texts = []
    for item in items:
        codes = "".join(SemanticId.from_codes(item["semantic_id"]).code_tokens())
        texts.append(build_prompt(item["title"]) + codes + SEM_END)
    return texts


def _train(peft_model: Any, tokenizer: Any, texts: list[str], steps: int) -> None:
    batch = tokenizer(texts, return_tensors="pt", padding=True)  # left padding: the IDs end every row
    labels = batch["input_ids"].clone()
    labels[:, : -(TINY_SCHEME.levels + 1)] = -100  # learn the codes and [SEM_END] only
    optimiser = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model.train()
    for _ in range(steps):
        loss = peft_model(**batch, labels=labels).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    peft_model.eval()


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
    lora = LoraSettings(rank=8, alpha=16)
    peft_model = attach_lora(model, lora, new_ids)
    _train(peft_model, tokenizer, _training_texts(items), steps)
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
        lora=lora.to_dict(),
        training={"steps": steps},
        evaluation={},
        fusion=fusion,
        item_embeddings=vectors if dense else None,
    )
    bundle_dir = root / "bundles" / "tiny"
    manifest = write_bundle(
        bundle_dir, peft_model=peft_model, tokenizer=tokenizer, new_token_ids=new_ids, inputs=inputs
    )
    return TinyBundle(bundle_dir=bundle_dir, base_models_dir=base_models_dir, manifest=manifest, items=items)
