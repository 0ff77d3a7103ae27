"""Trie-constrained beam search of our own: the prompt runs once, then one forward per ID level.

``model.generate`` runs the prompt once per beam and the full-vocabulary head at every step, then
masks all but a handful of rows. Here the prompt runs once per query (left-padded batch), the first
cache reorder copies its KV cache to the beams, and each step multiplies the last hidden state by
only the head rows that step may produce: the level's code tokens. The ``[SEM_END]`` step is not
run at all: it is the only token allowed after the last level, so its log-probability under the
constraint is exactly 0 (``generate`` spends a forward to add that 0).

Scores are what ``generate`` with ``TrieLogitsProcessor`` gives: at each level a log-softmax over
the allowed codes only (renormalised under the constraint), in float32, summed over levels. The
per-level loop has no host sync and no per-beam Python, so it runs the same way on CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from semantic_ids.trie import PrefixTrie


class TokenLayout(Protocol):
    """Where each level's code tokens sit in the vocabulary (``CodeTokenIds``): ``first[level] + code``."""

    @property
    def first(self) -> tuple[int, ...]: ...

    @property
    def sizes(self) -> tuple[int, ...]: ...


@dataclass(frozen=True)
class Beams:
    codes: torch.Tensor  # (queries, width, levels) long: one code per level
    log_probs: torch.Tensor  # (queries, width) float32, best first; -inf marks a slot no valid ID fills


class _CausalLm:
    """The parts of a causal LM the search calls: its body (hidden states after the final norm),
    its output head, and one KV cache shared by every forward of a search."""

    def __init__(self, model: Any) -> None:
        # peft: the base model's modules carry the LoRA layers, so its body is the fine-tuned body.
        causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.body = getattr(causal_lm, causal_lm.base_model_prefix)
        self.head = causal_lm.get_output_embeddings()
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
        """(rows, hidden) -> (rows, size) float32 logits of vocabulary rows ``first .. first + size``."""
        if type(self.head) is torch.nn.Linear:  # tied or untied, the head's own rows for these tokens
            bias = None if self.head.bias is None else self.head.bias[first : first + size]
            return F.linear(hidden, self.head.weight[first : first + size], bias).float()
        # A wrapped head (peft while training) is only known through its forward: run it, then slice.
        full: torch.Tensor = self.head(hidden)
        return full[:, first : first + size].float()


def _prompt_positions(input_ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(queries, length) positions that ignore left padding, exactly as ``generate`` derives them."""
    if mask is None:
        return torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _extend_mask(prompt_mask: torch.Tensor | None, repeats: int, new: int) -> torch.Tensor | None:
    """Each prompt's mask repeated for its ``repeats`` rows, then ``new`` tokens that all attend.

    None (no prompt padded) stays None: given a mask, transformers reads it on the host every
    forward to decide whether it may skip it, a device sync inside the per-level loop.
    """
    if prompt_mask is None:
        return None
    rows = prompt_mask.repeat_interleave(repeats, dim=0)
    return torch.cat([rows, rows.new_ones(rows.shape[0], new)], dim=1)


def _allowed(trie: PrefixTrie | None, level: int, nodes: torch.Tensor, size: int) -> torch.Tensor:
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


def _advance(
    trie: PrefixTrie | None, level: int, nodes: torch.Tensor, codes: torch.Tensor, alive: torch.Tensor
) -> torch.Tensor:
    """The trie node each beam reaches with ``codes`` (same shape as ``nodes``), -1 once dead."""
    if trie is None:
        return nodes
    child = trie.children[level][nodes.clamp(min=0), codes].long()
    return torch.where(alive & (nodes >= 0), child, torch.full_like(child, -1))


def _level_log_probs(
    lm: _CausalLm,
    hidden: torch.Tensor,
    layout: TokenLayout,
    level: int,
    trie: PrefixTrie | None,
    nodes: torch.Tensor,
) -> torch.Tensor:
    """(rows, hidden) states before ``level`` -> (rows, K_level) log-probs over the allowed codes."""
    size = layout.sizes[level]
    logits = lm.logits(hidden, layout.first[level], size)
    return masked_log_softmax(logits, _allowed(trie, level, nodes, size))


def _top_continuations(
    scores: torch.Tensor, log_probs: torch.Tensor, num_beams: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Q, W) beam scores + (Q, W, K) level log-probs -> the best ``num_beams`` (score, origin beam,
    code) per query, best first, as ``generate``'s top-k over beams x tokens picks them."""
    size = log_probs.shape[2]
    total = (scores.unsqueeze(2) + log_probs).flatten(1)  # (Q, W * K)
    best, index = total.topk(min(num_beams, total.shape[1]), dim=1)  # (Q, W'): shapes only, no sync
    return best, index // size, index % size


@torch.inference_mode()
def beam_search(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    layout: TokenLayout,
    trie: PrefixTrie | None,
    *,
    num_beams: int,
    early_finish: bool | None = None,
) -> Beams:
    """The ``num_beams`` best IDs per left-padded prompt (queries, length), best first.

    ``attention_mask=None`` means no prompt is padded. ``trie=None`` searches without the trie,
    still over each level's code rows only. ``early_finish`` (None: on the CPU only, where the check's
    host sync costs nothing) stops as soon as every beam's prefix leads to one ID: the remaining
    steps have one allowed code each, log-probability 0, so the result is the same without them.
    """
    queries, levels = input_ids.shape[0], len(layout.sizes)
    lm = _CausalLm(model)
    if early_finish is None:
        early_finish = input_ids.device.type == "cpu"
    positions = _prompt_positions(input_ids, attention_mask)  # (Q, T)
    hidden = lm.forward(input_ids, attention_mask, positions)[:, -1]  # (Q, H): left padding ends every row
    scores = torch.zeros(queries, 1, dtype=torch.float32, device=input_ids.device)  # (Q, W=1)
    nodes = torch.zeros(queries, 1, dtype=torch.long, device=input_ids.device)  # (Q, W) trie nodes
    codes = torch.zeros(queries, 1, 0, dtype=torch.long, device=input_ids.device)  # (Q, W, level)
    for level in range(levels):
        if level > 0:
            hidden = _feed_last_codes(lm, codes, attention_mask, positions, layout.first[level - 1])
        width = scores.shape[1]
        log_probs = _level_log_probs(lm, hidden, layout, level, trie, nodes.flatten())
        scores, origin, code = _top_continuations(scores, log_probs.view(queries, width, -1), num_beams)
        parents = codes.gather(1, origin.unsqueeze(2).expand(-1, -1, level))  # (Q, W', level)
        codes = torch.cat([parents, code.unsqueeze(2)], dim=2)
        nodes = _advance(trie, level, nodes.gather(1, origin), code, torch.isfinite(scores))
        if level < levels - 1 and early_finish and _determined(trie, level + 1, nodes):
            assert trie is not None  # _determined is False without a trie
            rest = trie.rest[level + 1][nodes.clamp(min=0)]  # (Q, W', levels - level - 1)
            return Beams(codes=torch.cat([codes, rest.clamp(min=0)], dim=2), log_probs=scores)
        if level < levels - 1:  # the first reorder also copies each prompt's cache to its beams
            rows = torch.arange(queries, device=origin.device).unsqueeze(1) * width + origin  # (Q, W')
            lm.cache.batch_select_indices(rows.flatten())
    return Beams(codes=codes, log_probs=scores)


def _determined(trie: PrefixTrie | None, level: int, nodes: torch.Tensor) -> bool:
    """Whether every live beam's node at ``level`` has one ID below it (dead beams: -1, count as done)."""
    if trie is None:
        return False
    single = trie.rest[level][nodes.clamp(min=0), 0] >= 0
    return bool((single | (nodes < 0)).all())  # a host sync: worth it where it skips a forward


def _feed_last_codes(
    lm: _CausalLm, codes: torch.Tensor, prompt_mask: torch.Tensor | None, positions: torch.Tensor, first: int
) -> torch.Tensor:
    """Run every beam's newest code token (one per beam) -> (Q * W, hidden) next-level states."""
    _, width, written = codes.shape
    tokens = (codes[:, :, -1] + first).reshape(-1, 1)  # (Q * W, 1)
    mask = _extend_mask(prompt_mask, width, written)  # (Q * W, T + written)
    step_positions = (positions[:, -1:] + written).repeat_interleave(width, dim=0)  # (Q * W, 1)
    return lm.forward(tokens, mask, step_positions)[:, -1]


@torch.inference_mode()
def score_codes(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    layout: TokenLayout,
    trie: PrefixTrie | None,
    codes: torch.Tensor,
) -> torch.Tensor:
    """Teacher-forced log-probability of given IDs: (Q, length) prompts, (Q, N, levels) codes -> (Q, N).

    The score ``beam_search`` gives the same ID (-inf for an ID outside the trie when constrained).
    Each prompt runs once; its cache is copied to its N candidates, whose code tokens run as one batch.
    """
    queries, count, levels = codes.shape
    lm = _CausalLm(model)
    positions = _prompt_positions(input_ids, attention_mask)  # (Q, T)
    first_hidden = lm.forward(input_ids, attention_mask, positions)[:, -1]  # (Q, H)
    hidden = first_hidden.repeat_interleave(count, dim=0).unsqueeze(1)  # (Q * N, 1, H)
    flat = codes.reshape(queries * count, levels)  # (Q * N, levels)
    if levels > 1:
        lm.cache.batch_select_indices(torch.arange(queries, device=codes.device).repeat_interleave(count))
        offsets = torch.tensor(layout.first[:-1], device=codes.device)  # (levels - 1,)
        tokens = flat[:, :-1] + offsets  # (Q * N, levels - 1)
        mask = _extend_mask(attention_mask, count, levels - 1)  # (Q * N, T + levels - 1)
        steps = torch.arange(1, levels, device=codes.device)  # (levels - 1,)
        token_positions = (positions[:, -1:] + steps).repeat_interleave(count, dim=0)  # (Q * N, levels - 1)
        hidden = torch.cat([hidden, lm.forward(tokens, mask, token_positions)], dim=1)  # (Q * N, levels, H)
    total = torch.zeros(queries * count, dtype=torch.float32, device=codes.device)
    nodes = torch.zeros(queries * count, dtype=torch.long, device=codes.device)
    for level in range(levels):
        log_probs = _level_log_probs(lm, hidden[:, level], layout, level, trie, nodes)  # (Q * N, K)
        total = total + log_probs.gather(1, flat[:, level : level + 1]).squeeze(1)
        nodes = _advance(trie, level, nodes, flat[:, level], torch.isfinite(total))
    return total.view(queries, count)
