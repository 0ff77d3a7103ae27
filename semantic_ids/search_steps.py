"""The pieces every step of a trie-constrained search shares: the causal LM's body and head over one
KV cache, positions and masks that ignore left padding, and the trie's per-level masks.

``beam_search`` (the beams), ``score_codes`` (teacher forcing in a pass of its own) and ``forced_ids``
(teacher forcing inside the beam search's forwards) all score a level the same way, so an ID gets the
same log-probability whichever of them computes it.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
import torch.nn.functional as F

from semantic_ids.trie import PrefixTrie


class TokenLayout(Protocol):
    """Where each level's code tokens sit in the vocabulary (``CodeTokenIds``): ``first[level] + code``."""

    @property
    def first(self) -> tuple[int, ...]: ...

    @property
    def sizes(self) -> tuple[int, ...]: ...


class CausalLm:
    """The parts of a causal LM a search calls: its body (hidden states after the final norm),
    its output head, and one KV cache shared by every forward of a search."""

    def __init__(self, model: Any) -> None:
        # peft: the base model's modules carry the LoRA layers, so its body is the fine-tuned body.
        causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.body = getattr(causal_lm, causal_lm.base_model_prefix)
        self.head = causal_lm.get_output_embeddings()
        from transformers import DynamicCache  # only this path needs transformers (the service's does not)

        self.cache = DynamicCache(config=causal_lm.config)

    def forward(
        self, input_ids: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor
    ) -> torch.Tensor:
        """(rows, new) tokens after the cached ones -> (rows, new, hidden) last hidden states."""
        out = self.body(
            input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=self.cache, use_cache=True
        )
        hidden: torch.Tensor = out.last_hidden_state
        return hidden

    def logits(self, hidden: torch.Tensor, first: int, size: int) -> torch.Tensor:
        return head_logits(self.head, hidden, first, size)


class SearchLm(Protocol):
    """What a search calls: ``CausalLm``, or a faster body's session (``llama_body.LlamaSession``)."""

    cache: Any  # reorders its rows with ``batch_select_indices(rows)``

    def forward(
        self, input_ids: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor
    ) -> torch.Tensor: ...

    def logits(self, hidden: torch.Tensor, first: int, size: int) -> torch.Tensor: ...


def search_lm(model: Any) -> SearchLm:
    """A fresh search over ``model``: a transformers causal LM, or a body with its own ``session``."""
    session = getattr(model, "session", None)
    return session() if callable(session) else CausalLm(model)


def head_logits(head: Any, hidden: torch.Tensor, first: int, size: int) -> torch.Tensor:
    """(rows, hidden) -> (rows, size) float32 logits of vocabulary rows ``first .. first + size``."""
    if type(head) is torch.nn.Linear:  # tied or untied, the head's own rows for these tokens
        bias = None if head.bias is None else head.bias[first : first + size]
        return F.linear(hidden, head.weight[first : first + size], bias).float()
    # A wrapped head (peft while training) is only known through its forward: run it, then slice.
    full: torch.Tensor = head(hidden)
    return full[:, first : first + size].float()


def prompt_positions(input_ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(queries, length) positions that ignore left padding, exactly as ``generate`` derives them."""
    if mask is None:
        return torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def rows_mask(prompt_mask: torch.Tensor | None, row_queries: torch.Tensor, new: int) -> torch.Tensor | None:
    """Each row's prompt mask (``row_queries``: the query of each row), then ``new`` tokens that all attend.

    None (no prompt padded) stays None: given a mask, transformers reads it on the host every
    forward to decide whether it may skip it, a device sync inside the per-level loop.
    """
    if prompt_mask is None:
        return None
    rows = prompt_mask[row_queries]
    return torch.cat([rows, rows.new_ones(rows.shape[0], new)], dim=1)


def allowed_codes(trie: PrefixTrie | None, level: int, nodes: torch.Tensor, size: int) -> torch.Tensor:
    """(rows,) trie nodes (-1: dead) -> (rows, size) bool: codes that extend each prefix to an ID."""
    if trie is None:  # unconstrained: every code of the level
        return torch.ones(nodes.shape[0], size, dtype=torch.bool, device=nodes.device)
    return (trie.children[level][nodes.clamp(min=0)] >= 0) & (nodes >= 0).unsqueeze(1)


def masked_log_softmax(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Log-softmax over the allowed entries of each row; -inf elsewhere, and all -inf (not NaN)
    for a row with nothing allowed, so a dead beam stays dead."""
    has_any = allowed.any(dim=-1, keepdim=True)
    masked = logits.masked_fill(~allowed, float("-inf"))
    normalised = torch.where(has_any, masked, torch.zeros_like(masked)).log_softmax(dim=-1)
    return normalised.masked_fill(~allowed, float("-inf"))


def advance(
    trie: PrefixTrie | None, level: int, nodes: torch.Tensor, codes: torch.Tensor, alive: torch.Tensor
) -> torch.Tensor:
    """The trie node each row reaches with ``codes`` (same shape as ``nodes``), -1 once dead."""
    if trie is None:
        return nodes
    child = trie.children[level][nodes.clamp(min=0), codes].long()
    return torch.where(alive & (nodes >= 0), child, torch.full_like(child, -1))


def level_log_probs(
    logits: torch.Tensor, trie: PrefixTrie | None, level: int, nodes: torch.Tensor
) -> torch.Tensor:
    """(rows, K_level) logits of the rows at trie ``nodes`` -> log-probs over the codes allowed there."""
    return masked_log_softmax(logits, allowed_codes(trie, level, nodes, logits.shape[1]))
