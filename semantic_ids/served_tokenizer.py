"""A tokenizer folder's ``tokenizer.json`` run by the ``tokenizers`` library itself, for the service.

transformers' fast tokenizers run that same file through the same library; what the service asks of them
(a batch's ids and attention mask, padded on one side; a BERT encoder's token types, truncated; token ids
by name; the vocabulary's size) is a thin layer above it. Importing transformers and loading its
tokenizer classes took ~1.2 s of every cold start on a 2-core AVX2 EPYC (bench/HISTORY.md), so the service
reads the file itself; tests hold the ids, masks and padding to transformers' for the bundle's and
MiniLM's tokenizers. Training keeps transformers' tokenizer: it adds the semantic-ID tokens and writes
the folder this reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from tokenizers import Tokenizer

Side = Literal["left", "right"]


class ServedTokenizer:
    """The tokenizer of ``folder`` (``tokenizer.json``, and ``tokenizer_config.json`` for its pad token).

    ``max_length``: each text's tokens, special ones included, cut to that many (as transformers'
    ``truncation=True, max_length=...``); None: never cut. The padding and truncation the file itself may
    carry are not used: each call pads as it asks.
    """

    def __init__(self, folder: Path, *, padding_side: Side = "right", max_length: int | None = None) -> None:
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.no_padding()
        if max_length is None:
            self._tokenizer.no_truncation()
        else:
            self._tokenizer.enable_truncation(max_length)
        config_file = folder / "tokenizer_config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        pad = _token_text(config.get("pad_token"))
        self.pad_token_id: int | None = None if pad is None else self._tokenizer.token_to_id(pad)
        self.padding_side: Side = padding_side

    def __len__(self) -> int:
        return int(self._tokenizer.get_vocab_size(with_added_tokens=True))

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int | None]:
        """Each token's id; None for a token the vocabulary lacks."""
        return [self._tokenizer.token_to_id(token) for token in tokens]

    def __call__(
        self,
        text: str | Sequence[str],
        *,
        padding: bool = False,
        padding_side: Side | None = None,
        return_tensors: Literal["pt"] | None = None,
    ) -> dict[str, Any]:
        """``input_ids``, ``attention_mask`` and ``token_type_ids`` of one text (lists of ints) or of a
        batch (a list per text; padded to the longest with ``padding``); with ``return_tensors``, (texts,
        tokens) tensors, one row for one text."""
        if isinstance(text, str) and return_tensors is None:
            one = self._tokenizer.encode(text)
            return {
                "input_ids": one.ids,
                "attention_mask": one.attention_mask,
                "token_type_ids": one.type_ids,
            }
        if isinstance(text, str):  # tensors of one row, as transformers gives them
            text = [text]
        encodings = self._tokenizer.encode_batch(list(text))
        batch = {
            "input_ids": [encoding.ids for encoding in encodings],
            "attention_mask": [encoding.attention_mask for encoding in encodings],
            "token_type_ids": [encoding.type_ids for encoding in encodings],
        }
        lengths = {len(ids) for ids in batch["input_ids"]}
        if padding and len(lengths) > 1:
            if self.pad_token_id is None:
                raise ValueError(
                    "this tokenizer has no pad token: texts of different lengths cannot be batched"
                )
            left = (padding_side or self.padding_side) == "left"
            longest = max(lengths)
            for key, fill in (("input_ids", self.pad_token_id), ("attention_mask", 0), ("token_type_ids", 0)):
                batch[key] = [_padded(row, fill, longest, left) for row in batch[key]]
        if return_tensors == "pt":
            if len(lengths) > 1 and not padding:
                raise ValueError("texts of different lengths make a tensor only with padding=True")
            return {key: torch.tensor(rows, dtype=torch.long) for key, rows in batch.items()}
        return batch


def _padded(row: list[int], fill: int, length: int, left: bool) -> list[int]:
    filler = [fill] * (length - len(row))
    return filler + row if left else row + filler


def _token_text(token: Any) -> str | None:
    """A token as ``tokenizer_config.json`` writes it: its text, or an object with its ``content``."""
    if isinstance(token, dict):
        token = token.get("content")
    return token if isinstance(token, str) else None
