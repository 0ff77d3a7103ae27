"""The service's tokenizer (``ServedTokenizer``: the folder's tokenizer.json run by ``tokenizers``) gives
what transformers' tokenizer of the same folder gives: ids, masks, token types, padding on either side,
truncation, token ids by name and the vocabulary's size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer

from semantic_ids.decoding import CodeTokenIds, build_prompt
from semantic_ids.ids import SEM_END, SEM_START
from semantic_ids.served_tokenizer import ServedTokenizer
from semantic_ids.text_encoder import minilm_folder
from tests.helpers.tiny_catalogue import TINY_SCHEME
from tests.helpers.tiny_models import make_tiny_tokenizer
from training.llm.tokens import add_semantic_tokens

TEXTS = [
    "a french comedy from the nineties",
    "Une comédie des années 80 avec Gérard Depardieu",
    "  spaces  around ",
    "日本の映画",
    "naïve café résumé Ñandú straße ﬁlm Ⅻ",
    "x",
    "",
    "a long text " * 200,  # past MiniLM's 256 tokens
]


def _same(served: dict[str, Any], expected: Any, keys: tuple[str, ...]) -> None:
    for key in keys:
        got, want = served[key], expected[key]
        if isinstance(want, torch.Tensor):
            assert torch.equal(got, want), key
        else:
            assert got == want, key


def test_minilm_tokens_match_transformers_with_padding_and_truncation() -> None:
    folder = minilm_folder()
    expected = AutoTokenizer.from_pretrained(str(folder))
    served = ServedTokenizer(folder, max_length=256)
    keys = ("input_ids", "attention_mask", "token_type_ids")
    _same(served(TEXTS), expected(TEXTS, truncation=True, max_length=256), keys)
    _same(
        served(TEXTS, padding=True, return_tensors="pt"),
        expected(TEXTS, padding=True, truncation=True, max_length=256, return_tensors="pt"),
        keys,
    )
    _same(served(TEXTS[1]), expected(TEXTS[1], truncation=True, max_length=256), keys)
    assert len(served(TEXTS[-1])["input_ids"]) == 256
    assert len(served) == len(expected) and served.pad_token_id == expected.pad_token_id == 0


@pytest.fixture(scope="module")
def bundle_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A tokenizer with the semantic-ID tokens added, saved as training saves a bundle's."""
    tokenizer = make_tiny_tokenizer()
    add_semantic_tokens(tokenizer, TINY_SCHEME)
    folder = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(str(folder)), folder


def test_a_bundle_tokenizer_encodes_prompts_and_code_tokens_as_transformers_does(
    bundle_tokenizer: tuple[Any, Path],
) -> None:
    expected, folder = bundle_tokenizer
    served = ServedTokenizer(folder, padding_side="left")
    prompts = [build_prompt(text) for text in TEXTS[:6]]
    for side in ("left", "right"):
        _same(
            served(prompts, padding=True, padding_side=side, return_tensors="pt"),
            expected(prompts, padding=True, padding_side=side, return_tensors="pt"),
            ("input_ids", "attention_mask"),
        )
    batch = served(prompts, padding=True, return_tensors="pt")
    assert batch["input_ids"][-1, 0] == served.pad_token_id == expected.pad_token_id  # padded on the left
    assert served(prompts[0])["input_ids"] == expected(prompts[0])["input_ids"]
    _same(served(prompts[0], return_tensors="pt"), expected(prompts[0], return_tensors="pt"), ("input_ids",))
    assert len(served) == len(expected)
    tokens = [SEM_START, SEM_END, "not-a-token"]
    assert served.convert_tokens_to_ids(tokens)[:2] == expected.convert_tokens_to_ids(tokens[:2])
    assert served.convert_tokens_to_ids(tokens)[2] is None
    assert CodeTokenIds.from_tokenizer(served, TINY_SCHEME) == CodeTokenIds.from_tokenizer(
        expected, TINY_SCHEME
    )


def test_texts_of_different_lengths_need_padding_and_a_pad_token(
    bundle_tokenizer: tuple[Any, Path], tmp_path: Path
) -> None:
    _, folder = bundle_tokenizer
    with pytest.raises(ValueError, match="only with padding=True"):
        ServedTokenizer(folder)(["a", "longer"], return_tensors="pt")
    (tmp_path / "tokenizer.json").write_text(
        (folder / "tokenizer.json").read_text()
    )  # no config: no pad token
    unpadded = ServedTokenizer(tmp_path)
    assert unpadded.pad_token_id is None
    with pytest.raises(ValueError, match="no pad token"):
        unpadded(["a", "longer"], padding=True)
    assert unpadded(["same", "four"], padding=True, return_tensors="pt")["input_ids"].shape == (2, 4)
