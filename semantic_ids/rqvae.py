"""The RQ-VAE that turns an item embedding into a few discrete codes: MLP encoder -> residual vector
quantiser (``vector_quantize_pytorch.ResidualVQ``) -> MLP decoder.

Level 0 picks the nearest of K centroids in latent space, level 1 quantises what level 0 left over,
and so on, so items that share a prefix are close in embedding space: that is what lets an LLM learn
to write IDs coarse-to-fine.

It lives in the shared contract because both halves run it: training learns it and assigns the IDs;
the service loads the bundle's frozen copy (``rqvae.safetensors``) to give items added later an ID
whose prefix the model already knows (``semantic_ids.id_allocation``).
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn
from vector_quantize_pytorch import ResidualVQ


class RQVAEError(ValueError):
    """Input the RQ-VAE cannot use (wrong embedding shape, too few items, a foreign weights file)."""


@dataclass(frozen=True)
class RQVAEConfig:
    input_dim: int = 384
    hidden_dims: tuple[int, ...] = (512, 256)
    latent_dim: int = 32
    levels: int = 3
    codebook_size: int = 256
    commitment_weight: float = 0.25
    ema_decay: float = 0.95  # codebook EMA; the library's 0.8 is tuned for huge image batches
    kmeans_iters: int = 20
    # A code whose EMA batch count falls below this is re-seeded from the batch. Keep it well under
    # batch_size / codebook_size (the count of a code used exactly as often as average).
    dead_code_threshold: float = 0.5
    rotation_trick: bool = True  # gradients through the quantiser keep their angle to the codeword
    epochs: int = 60
    # Items the codebooks are trained on: a seeded sample of at most this many (0: every item). Every item
    # is still encoded and gets its ID; a large catalogue's training costs what a sample's does, as
    # k-means and product quantisers are trained on samples (bench/RESULTS.md, Scale).
    train_sample: int = 0
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RQVAEConfig:
        known = {field.name for field in fields(cls)}
        values = {key: value for key, value in raw.items() if key in known}
        if "hidden_dims" in values:
            values["hidden_dims"] = tuple(values["hidden_dims"])
        return cls(**values)


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(itertools.pairwise(dims)):
        layers.append(nn.Linear(width_in, width_out))
        if index < len(dims) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class SemanticRQVAE(nn.Module):
    def __init__(
        self,
        *,
        input_dim: int,
        hidden_dims: tuple[int, ...],
        latent_dim: int,
        levels: int,
        codebook_size: int,
        commitment_weight: float = 0.25,
        ema_decay: float = 0.95,
        kmeans_iters: int = 20,
        dead_code_threshold: float = 0.5,
        rotation_trick: bool = True,
    ) -> None:
        super().__init__()
        self.levels = levels
        self.codebook_size = codebook_size
        self.encoder = _mlp([input_dim, *hidden_dims, latent_dim])
        self.decoder = _mlp([latent_dim, *reversed(hidden_dims), input_dim])
        self.quantizer = ResidualVQ(
            dim=latent_dim,
            num_quantizers=levels,
            codebook_size=codebook_size,
            commitment_weight=commitment_weight,
            decay=ema_decay,
            kmeans_init=True,  # centroids start on the data, not at random points nobody uses
            kmeans_iters=kmeans_iters,
            threshold_ema_dead_code=dead_code_threshold,
            rotation_trick=rotation_trick,
        )

    @classmethod
    def from_config(cls, config: RQVAEConfig) -> SemanticRQVAE:
        return cls(
            input_dim=config.input_dim,
            hidden_dims=config.hidden_dims,
            latent_dim=config.latent_dim,
            levels=config.levels,
            codebook_size=config.codebook_size,
            commitment_weight=config.commitment_weight,
            ema_decay=config.ema_decay,
            kmeans_iters=config.kmeans_iters,
            dead_code_threshold=config.dead_code_threshold,
            rotation_trick=config.rotation_trick,
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        latent: torch.Tensor = self.encoder(x)  # (b, input_dim) -> (b, latent_dim)
        return latent

    def quantize(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        quantized, codes, commit_losses = self.quantizer(latent)  # (b, d), (b, levels), (levels,)
        return quantized, codes, commit_losses.sum()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(reconstruction (b, input_dim), codes (b, levels), losses)."""
        quantized, codes, commitment = self.quantize(self.encode(x))
        reconstruction = self.decode(quantized)
        # Squared distance per item (not per dimension): unit-norm inputs make the per-dimension mean
        # tiny next to the commitment term.
        recon_loss = (reconstruction - x).pow(2).sum(dim=-1).mean()
        losses = {"reconstruction": recon_loss, "commitment": commitment, "total": recon_loss + commitment}
        return reconstruction, codes, losses

    def decode(self, quantized: torch.Tensor) -> torch.Tensor:
        reconstruction: torch.Tensor = self.decoder(quantized)  # (b, latent_dim) -> (b, input_dim)
        return reconstruction

    def quantized_from_codes(self, codes: torch.Tensor) -> torch.Tensor:
        quantized: torch.Tensor = self.quantizer.get_output_from_indices(codes)  # (b, levels) -> (b, d)
        return quantized

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decode(self.quantized_from_codes(codes))


def save_rqvae(model: SemanticRQVAE, config: RQVAEConfig, path: Path) -> None:
    """safetensors weights, with the config in the file's metadata so the file is self-describing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        save_model(model, str(partial), metadata={"rqvae_config": json.dumps(config.to_json())})
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def load_rqvae(path: Path) -> tuple[SemanticRQVAE, RQVAEConfig]:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise RQVAEError(f"{path}: no such file; run `semid train-rqvae` first")
    try:
        handle_cm = safe_open(str(path), framework="pt")
    except SafetensorError as error:
        raise RQVAEError(f"{path}: not a safetensors file ({error})") from None
    with handle_cm as handle:
        metadata = handle.metadata() or {}
    if "rqvae_config" not in metadata:
        raise RQVAEError(f"{path}: not an RQ-VAE file written by save_rqvae (no rqvae_config metadata)")
    config = RQVAEConfig.from_json(json.loads(metadata["rqvae_config"]))
    model = SemanticRQVAE.from_config(config)
    load_model(model, str(path))
    return model.eval(), config
