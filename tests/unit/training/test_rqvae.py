"""RQ-VAE training on synthetic clustered embeddings: it learns, uses its codes, and is reproducible."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from semantic_ids.rqvae import RQVAEConfig, RQVAEError, SemanticRQVAE, load_rqvae, save_rqvae
from tests.helpers.rqvae_data import CLUSTERS, TINY, clustered_embeddings
from training.ids.train_rqvae import encode_items, train_rqvae
from training.profiles import RQVAE_TRAIN_SAMPLE, rqvae_config

Trained = tuple[SemanticRQVAE, list[dict[str, Any]], np.ndarray, np.ndarray]


@pytest.fixture(scope="module")
def trained() -> Trained:
    torch.set_num_threads(1)
    embeddings, labels = clustered_embeddings()
    model, history = train_rqvae(embeddings, TINY, show_progress=False)
    return model, history, embeddings, labels


def test_reconstruction_loss_goes_down(trained: Trained) -> None:
    _, history, _, _ = trained
    assert len(history) == TINY.epochs
    assert history[-1]["reconstruction"] < 0.3 * history[0]["reconstruction"]


def test_most_codes_are_used_and_level0_follows_the_clusters(trained: Trained) -> None:
    model, history, embeddings, labels = trained
    level0_usage, level1_usage = history[-1]["usage"]
    assert level0_usage == 1.0 and level1_usage >= 0.5
    codes = encode_items(model, embeddings)["codes"]
    assert codes.shape == (len(embeddings), TINY.levels) and codes.max() < TINY.codebook_size
    # Purity: most of each true cluster lands on one level-0 code.
    majority = sum(np.bincount(codes[labels == cluster, 0]).max() for cluster in range(CLUSTERS))
    assert majority / len(labels) >= 0.8


def test_same_input_and_seed_give_the_same_codes(trained: Trained) -> None:
    model, history, embeddings, _ = trained
    again, history_again = train_rqvae(embeddings, TINY, show_progress=False)
    assert np.array_equal(encode_items(model, embeddings)["codes"], encode_items(again, embeddings)["codes"])
    assert history == history_again


def test_forward_shapes_and_decode_methods(trained: Trained) -> None:
    model, _, embeddings, _ = trained
    batch = torch.from_numpy(embeddings[:5])
    reconstruction, codes, losses = model(batch)
    assert reconstruction.shape == batch.shape and codes.shape == (5, TINY.levels)
    assert set(losses) == {"reconstruction", "commitment", "total"}
    with torch.no_grad():
        quantized, _, _ = model.quantize(model.encode(batch))
        assert torch.allclose(model.quantized_from_codes(codes), quantized, atol=1e-5)
        assert torch.allclose(model.decode_codes(codes), model.decode(quantized), atol=1e-5)


def test_safetensors_round_trip_keeps_codes_and_config(trained: Trained, tmp_path: Path) -> None:
    model, _, embeddings, _ = trained
    save_rqvae(model, TINY, tmp_path / "rqvae.safetensors")
    loaded, config = load_rqvae(tmp_path / "rqvae.safetensors")
    assert config == TINY
    assert np.array_equal(encode_items(loaded, embeddings)["codes"], encode_items(model, embeddings)["codes"])
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(RQVAEError):
        load_rqvae(tmp_path / "junk.safetensors")
    with pytest.raises(RQVAEError, match="no such file"):
        load_rqvae(tmp_path / "absent.safetensors")


def test_bad_training_input_is_a_domain_error() -> None:
    embeddings, _ = clustered_embeddings()
    with pytest.raises(RQVAEError, match="shape"):
        train_rqvae(embeddings[:, :10], TINY, show_progress=False)
    with pytest.raises(RQVAEError, match="codebook"):
        train_rqvae(embeddings[:5], TINY, show_progress=False)


def test_profile_presets() -> None:
    demo, full = rqvae_config("demo"), rqvae_config("full")
    assert demo.codebook_size < full.codebook_size and (demo.levels, full.levels) == (2, 3)
    assert rqvae_config("demo", item_count=1000) == demo  # the demo's own 1,000 films: 4,096 IDs
    mine = rqvae_config("mine", item_count=800)
    assert (mine.codebook_size, mine.levels) == (demo.codebook_size, 2)
    # A larger small catalogue gets a level more rather than crowding 4,096 IDs.
    assert rqvae_config("mine", item_count=3000).levels == 3
    assert rqvae_config("mine", item_count=3000, levels=2).levels == 2  # unless asked for
    # Fewer items than codes: the codebook halves until the items can fill it.
    small = rqvae_config("mine", item_count=40)
    assert (small.codebook_size, small.levels) == (32, 2)
    assert rqvae_config("full", epochs=2).epochs == 2
    assert RQVAEConfig.from_json(full.to_json()) == full


def test_a_sample_trains_codebooks_that_still_follow_every_items_clusters() -> None:
    """A large catalogue's RQ-VAE trains on a seeded sample (``train_sample``): the same seed gives the
    same model, not the one every item trains, and every item, sampled or not, still lands on its
    cluster's level-0 code."""
    torch.set_num_threads(1)
    embeddings, labels = clustered_embeddings(per_cluster=120)
    sampled = replace(TINY, train_sample=240)  # a quarter of the 960 items
    model, _ = train_rqvae(embeddings, sampled, show_progress=False)
    again, _ = train_rqvae(embeddings, sampled, show_progress=False)
    codes = encode_items(model, embeddings)["codes"]
    assert np.array_equal(codes, encode_items(again, embeddings)["codes"])
    everything, _ = train_rqvae(embeddings, TINY, show_progress=False)  # the same seed on every item
    assert not torch.equal(model.encoder[0].weight, everything.encoder[0].weight)
    majority = sum(np.bincount(codes[labels == cluster, 0]).max() for cluster in range(CLUSTERS))
    assert majority / len(labels) >= 0.8
    # The presets: past RQVAE_TRAIN_SAMPLE items a catalogue trains on a sample of that many.
    assert rqvae_config("mine", item_count=RQVAE_TRAIN_SAMPLE).train_sample == 0
    assert rqvae_config("mine", item_count=RQVAE_TRAIN_SAMPLE + 1).train_sample == RQVAE_TRAIN_SAMPLE
    assert rqvae_config("mine", item_count=10**6, train_sample=0).train_sample == 0  # unless asked for
