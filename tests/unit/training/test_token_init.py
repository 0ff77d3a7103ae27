"""The code tokens' starting rows ("cluster"): each code's row points from the items' mean text vector
towards the mean text vector of the items carrying that code, at a real token's typical distance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from semantic_ids.causal_lm import resize_for_tokens
from semantic_ids.ids import code_token
from tests.helpers.tiny_catalogue import TINY_SCHEME, tiny_catalogue
from tests.helpers.tiny_models import make_tiny_base_model
from training.llm import tokens
from training.llm.tokens import _item_text_for_init, add_semantic_tokens, initialise_new_rows


def test_cluster_rows_are_the_members_mean_direction_in_blocks_or_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base_dir = make_tiny_base_model(tmp_path / "base_models")
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    add_semantic_tokens(tokenizer, TINY_SCHEME)
    items = tiny_catalogue()
    monkeypatch.setattr(tokens, "_INIT_BLOCK", 3)  # several blocks, the last one short
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    resize_for_tokens(model, tokenizer)
    before = model.get_input_embeddings().weight.detach().clone()
    initialise_new_rows(model, tokenizer, TINY_SCHEME, strategy="cluster", items=items, rq_levels=2)
    after = model.get_input_embeddings().weight.detach()
    # The plain computation, item by item.
    first_new = tokenizer.convert_tokens_to_ids(TINY_SCHEME.all_tokens()[0])
    old = before[:first_new]
    mean, spread = old.mean(dim=0), (old - old.mean(dim=0)).norm(dim=1).median()
    token_ids = [
        tokenizer(_item_text_for_init(item), add_special_tokens=False)["input_ids"] for item in items
    ]
    vectors = torch.stack([before[torch.tensor(ids or [0])].mean(dim=0) for ids in token_ids])
    centre = vectors.mean(dim=0)
    checked = 0
    for level in range(2):
        for code in sorted({item.sid.codes[level] for item in items}):
            members = [i for i, item in enumerate(items) if item.sid.codes[level] == code]
            direction = vectors[members].mean(dim=0) - centre
            want = mean + spread * direction / direction.norm().clamp(min=1e-8)
            got = after[tokenizer.convert_tokens_to_ids(code_token(level, code))]
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
            checked += 1
    assert checked >= 4
