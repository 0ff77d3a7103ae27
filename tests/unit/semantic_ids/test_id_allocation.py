"""IDs for items added after training: their RQ-VAE codes, the lowest free disambiguation code, a
neighbouring prefix when that group is full, and never an ID once retired."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semantic_ids.id_allocation import IdAllocator, IdSpaceFull
from semantic_ids.ids import IdScheme, SemanticId
from semantic_ids.rqvae import RQVAEConfig, SemanticRQVAE

SCHEME = IdScheme((4, 4, 2))  # 16 prefixes x 2 slots


@pytest.fixture(scope="module")
def allocator() -> IdAllocator:
    torch.manual_seed(0)
    config = RQVAEConfig(
        input_dim=16, hidden_dims=(16,), latent_dim=4, levels=2, codebook_size=4, kmeans_iters=3
    )
    model = SemanticRQVAE.from_config(config).train()
    with torch.no_grad():
        model(torch.randn(64, 16))
    return IdAllocator(model.eval(), SCHEME)


def vectors(count: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 16)).astype(np.float32)


def test_a_new_item_takes_its_own_codes_and_the_lowest_free_slot(allocator: IdAllocator) -> None:
    vector = vectors(1)
    own = tuple(int(c) for c in allocator.preferences(vector)[0, 0])
    first = allocator.allocate(vector, [], [None])[0]
    assert first.semantic_id == SemanticId((*own, 0)) and first.placement == "own"
    second = allocator.allocate(vector, [first.semantic_id], [None])[0]
    assert second.semantic_id == SemanticId((*own, 1))


def test_a_full_group_sends_the_item_to_the_nearest_free_prefix(allocator: IdAllocator) -> None:
    vector = vectors(1)
    options = allocator.preferences(vector)[0]
    own, runner_up = tuple(int(c) for c in options[0]), tuple(int(c) for c in options[1])
    taken = [SemanticId((*own, 0)), SemanticId((*own, 1))]
    placed = allocator.allocate(vector, taken, [None])[0]
    assert placed.placement == "neighbour" and placed.semantic_id == SemanticId((*runner_up, 0))
    assert "all taken" in placed.reason


def test_items_of_one_call_never_share_an_id_and_retired_ids_stay_retired(allocator: IdAllocator) -> None:
    retired = [SemanticId((code0, code1, 0)) for code0 in range(4) for code1 in range(4)]
    placed = allocator.allocate(vectors(16, seed=3), retired, [None] * 16)
    given = [p.semantic_id for p in placed]
    assert len(set(given)) == 16 and not set(given) & set(retired)
    assert all(sid.codes[-1] == 1 for sid in given)  # slot 0 is retired everywhere
    with pytest.raises(IdSpaceFull, match="retrain"):
        allocator.allocate(vectors(1, seed=9), retired + given, [None])


def test_an_unchanged_item_keeps_its_id_and_a_moved_one_retires_it(allocator: IdAllocator) -> None:
    vector = vectors(1)
    own = tuple(int(c) for c in allocator.preferences(vector)[0, 0])
    current = SemanticId((*own, 1))
    kept = allocator.allocate(vector, [current], [current])[0]
    assert kept.semantic_id == current and kept.placement == "kept"
    elsewhere = SemanticId(((own[0] + 1) % 4, own[1], 0))
    moved = allocator.allocate(vector, [elsewhere], [elsewhere])[0]
    assert moved.semantic_id != elsewhere and "moved" in moved.reason


def test_an_rqvae_of_another_shape_is_refused(allocator: IdAllocator) -> None:
    with pytest.raises(ValueError, match="cannot give IDs"):
        IdAllocator(allocator.rqvae, IdScheme((8, 8, 2)))
