"""``semid pipeline --hold-out``: a seeded share of the catalogue kept out of the run."""

from __future__ import annotations

import pytest

from training.data.items import CatalogueItem
from training.pipeline.config import PipelineError
from training.pipeline.run import hold_out

ITEMS = [CatalogueItem(f"i{n}", f"Title {n}") for n in range(50)]


def test_a_seeded_share_is_held_out_and_the_rest_kept_in_order() -> None:
    kept, held = hold_out(ITEMS, 0.1, seed=0)
    assert len(held) == 5 and len(kept) == 45
    assert {i.item_id for i in kept} | {i.item_id for i in held} == {i.item_id for i in ITEMS}
    assert [i.item_id for i in kept] == [i.item_id for i in ITEMS if i not in held]
    assert hold_out(ITEMS, 0.1, seed=0) == (kept, held) and hold_out(ITEMS, 0.1, seed=1)[1] != held
    assert hold_out(ITEMS, 0.0, seed=0) == (ITEMS, [])


@pytest.mark.parametrize("share", [-0.1, 1.0, 1.5])
def test_a_share_outside_0_1_is_refused(share: float) -> None:
    with pytest.raises(PipelineError, match="--hold-out"):
        hold_out(ITEMS, share, seed=0)
