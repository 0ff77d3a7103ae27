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

Given ``forced`` IDs, the search also returns their teacher-forced log-probabilities from the same
prompt pass and the same per-level forwards (``semantic_ids.forced_ids``): hybrid retrieval scores its
lexical and dense finds that way. Choosing which prefixes those IDs add to a level (``torch.unique``)
is then one host sync per level on CUDA; the search without them has none.

On the CPU the search also stops as soon as every beam's prefix (and every forced ID's) leads to one
ID (``early_finish``): each remaining step has one allowed code, log-probability 0, so the result is
the same without those forwards. The check reads one flag per level from the device, free on a CPU.
For the same reason the last level's forward runs only the rows whose prefix allows more than one last
code (with 64 x 64 x 5 IDs, the few beams among colliding items; a forward's cost grows with its rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from semantic_ids.forced_ids import Estimate, ExtraRows, ForcedIds
from semantic_ids.search_steps import (
    SearchLm,
    TokenLayout,
    advance,
    level_log_probs,
    prompt_positions,
    rows_mask,
    search_lm,
)
from semantic_ids.trie import PrefixTrie

__all__ = ["Beams", "TokenLayout", "beam_search", "score_codes"]


@dataclass(frozen=True)
class Beams:
    codes: torch.Tensor  # (queries, width, levels) long: one code per level
    log_probs: torch.Tensor  # (queries, width) float32, best first; -inf marks a slot no valid ID fills
    forced_log_probs: torch.Tensor | None = None  # (queries, N) float32 of the forced IDs; None: none given


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
    forced: torch.Tensor | None = None,
    early_finish: bool | None = None,
    first_level_beams: int | None = None,
    estimate: Estimate | None = None,
) -> Beams:
    """The ``num_beams`` best IDs per left-padded prompt (queries, length), best first.

    ``attention_mask=None`` means no prompt is padded. ``trie=None`` searches without the trie,
    still over each level's code rows only. ``forced``: (queries, N, levels) codes of IDs to score
    on the way (``Beams.forced_log_probs``), as ``score_codes`` would. ``early_finish`` (None: on the
    CPU only) writes the rest of each ID without running the model once no path branches any more.
    ``first_level_beams`` (None: ``num_beams``) keeps more first codes than ``num_beams``: the first
    decision is made on the prompt alone, and the right ID's first code can rank below the beams' while
    its full ID ranks among them; the next level's forward costs little more for the extra rows.
    ``estimate``: forced IDs far behind on their first code run no later rows (``forced_ids.Estimate``).
    """
    queries, levels, device = input_ids.shape[0], len(layout.sizes), input_ids.device
    lm = search_lm(model)
    early_finish = device.type == "cpu" if early_finish is None else early_finish
    positions = prompt_positions(input_ids, attention_mask)  # (Q, T)
    hidden = lm.forward(input_ids, attention_mask, positions)[:, -1]  # (Q, H): left padding ends every row
    riders = None if forced is None else ForcedIds(forced, layout.sizes, trie, estimate)
    scores = torch.zeros(queries, 1, dtype=torch.float32, device=device)  # (Q, W=1)
    nodes = torch.zeros(queries, 1, dtype=torch.long, device=device)  # (Q, W) trie nodes
    codes = torch.zeros(queries, 1, 0, dtype=torch.long, device=device)  # (Q, W, level)
    extra: ExtraRows | None = None
    running: torch.Tensor | None = None  # at the last level, the rows that run (None: all of them)
    layout_rows = 0  # rows of the cache's layout (beams, then extra rows) that ``running`` picks from
    for level in range(levels):
        if level > 0:
            hidden = _feed_last_codes(
                lm, codes, extra, attention_mask, positions, layout.first[level - 1], running
            )
        width = scores.shape[1]
        logits = lm.logits(hidden, layout.first[level], layout.sizes[level])  # (Q * W + extra rows, K)
        if running is not None:  # the rows left out allow one code: any logits give it log-probability 0
            logits = logits.new_zeros(layout_rows, logits.shape[1]).index_copy_(0, running, logits)
        log_probs = level_log_probs(logits[: queries * width], trie, level, nodes.flatten())
        if riders is not None:
            riders.score_level(level, logits)
        keep = max(num_beams, first_level_beams or 0) if level == 0 else num_beams
        scores, origin, code = _top_continuations(scores, log_probs.view(queries, width, -1), keep)
        parents = codes.gather(1, origin.unsqueeze(2).expand(-1, -1, level))  # (Q, W', level)
        codes = torch.cat([parents, code.unsqueeze(2)], dim=2)
        nodes = advance(trie, level, nodes.gather(1, origin), code, torch.isfinite(scores))
        if level < levels - 1 and early_finish and _determined(trie, level + 1, nodes, riders):
            codes = _finish_without_model(trie, level + 1, nodes, codes, riders)
            break
        if level < levels - 1:  # the first reorder also copies each prompt's cache to its beams
            rows = (torch.arange(queries, device=device).unsqueeze(1) * width + origin).flatten()  # (Q * W')
            extra = None if riders is None else riders.extra_rows(codes)
            lm_rows = rows if extra is None else torch.cat([rows, extra.parents])
            if early_finish and level == levels - 2 and trie is not None:
                layout_rows = len(lm_rows)
                running = _branching_rows(trie, level + 1, nodes, layout_rows)
                lm.cache.batch_select_indices(lm_rows[running])
            else:
                lm.cache.batch_select_indices(lm_rows)
    forced_log_probs = None if riders is None else riders.log_probs()
    # A search finished early after a wider first level holds more beams than asked for, best first.
    return Beams(
        codes=codes[:, :num_beams], log_probs=scores[:, :num_beams], forced_log_probs=forced_log_probs
    )


def _finish_without_model(
    trie: PrefixTrie | None, level: int, nodes: torch.Tensor, codes: torch.Tensor, riders: ForcedIds | None
) -> torch.Tensor:
    """(Q, W, level) codes -> (Q, W, levels): each beam's one remaining path written in; the forced IDs
    get their remaining levels' scores (0, or -inf off the trie) the same way."""
    assert trie is not None  # _determined is False without a trie
    rest = trie.rest[level][nodes.clamp(min=0)]  # (Q, W, levels - level); dead beams: -1s
    if riders is not None:
        riders.score_without_model(level)
    return torch.cat([codes, rest.clamp(min=0)], dim=2)


def _determined(trie: PrefixTrie | None, level: int, nodes: torch.Tensor, riders: ForcedIds | None) -> bool:
    """Whether from ``level`` on no live beam's path branches, nor any forced ID's (dead beams: -1)."""
    if trie is None:
        return False
    single = (trie.rest[level][nodes.clamp(min=0), 0] >= 0) | (nodes < 0)
    riders_done = riders is None or not riders.branches_from(level)
    return riders_done and bool(single.all())  # a host sync: worth it where it skips a forward


def _branching_rows(trie: PrefixTrie, level: int, nodes: torch.Tensor, total: int) -> torch.Tensor:
    """(running,) the rows of the last level's forward, of ``total``: the beams (``nodes``, (Q, W)) whose
    prefix allows more than one last code, then every forced ID's extra row (``ForcedIds`` adds a row only
    for a prefix whose path branches there). A beam whose prefix allows one code scores it 0 whatever the
    logits: with 64 x 64 x 5 IDs most beams are such, and its row cost the forward as much as any other's."""
    flat = nodes.flatten()
    branching = (flat >= 0) & (trie.rest[level][flat.clamp(min=0), 0] < 0)  # no single path: as _determined
    extra = torch.ones(total - len(flat), dtype=torch.bool, device=flat.device)
    return torch.cat([branching, extra]).nonzero().squeeze(1)  # a host sync: on the CPU only


def _feed_last_codes(
    lm: SearchLm,
    codes: torch.Tensor,
    extra: ExtraRows | None,
    prompt_mask: torch.Tensor | None,
    positions: torch.Tensor,
    first: int,
    running: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run every beam's newest code token (one per beam), then the extra rows' -> (rows, hidden)
    next-level states, the beams' first (Q * W of them); only the ``running`` rows where given."""
    queries, width, written = codes.shape
    tokens = codes[:, :, -1].reshape(-1)  # (Q * W,)
    row_queries = torch.arange(queries, device=codes.device).repeat_interleave(width)  # (Q * W,)
    if extra is not None:
        tokens = torch.cat([tokens, extra.codes])
        row_queries = torch.cat([row_queries, extra.queries])
    if running is not None:
        tokens, row_queries = tokens[running], row_queries[running]
    mask = rows_mask(prompt_mask, row_queries, written)  # (rows, T + written)
    step_positions = positions[row_queries, -1:] + written  # (rows, 1)
    return lm.forward((tokens + first).unsqueeze(1), mask, step_positions)[:, -1]


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
    Each prompt runs once; its cache is copied to its N candidates, whose code tokens (all but the last,
    whose logits are never needed) run as one batch of ``levels - 1`` tokens a row. Beside a beam search
    of the same queries, ``beam_search(forced=...)`` is cheaper: no second prompt pass, no extra forward.
    """
    queries, count, levels = codes.shape
    lm = search_lm(model)
    positions = prompt_positions(input_ids, attention_mask)  # (Q, T)
    first_hidden = lm.forward(input_ids, attention_mask, positions)[:, -1]  # (Q, H)
    hidden = first_hidden.repeat_interleave(count, dim=0).unsqueeze(1)  # (Q * N, 1, H)
    flat = codes.reshape(queries * count, levels)  # (Q * N, levels)
    if levels > 1:
        row_queries = torch.arange(queries, device=codes.device).repeat_interleave(count)  # (Q * N,)
        lm.cache.batch_select_indices(row_queries)
        offsets = torch.tensor(layout.first[:-1], device=codes.device)  # (levels - 1,)
        tokens = flat[:, :-1] + offsets  # (Q * N, levels - 1)
        mask = rows_mask(attention_mask, row_queries, levels - 1)  # (Q * N, T + levels - 1)
        steps = torch.arange(1, levels, device=codes.device)  # (levels - 1,)
        token_positions = positions[row_queries, -1:] + steps  # (Q * N, levels - 1)
        hidden = torch.cat([hidden, lm.forward(tokens, mask, token_positions)], dim=1)  # (Q * N, levels, H)
    total = torch.zeros(queries * count, dtype=torch.float32, device=codes.device)
    nodes = torch.zeros(queries * count, dtype=torch.long, device=codes.device)
    for level in range(levels):
        logits = lm.logits(hidden[:, level], layout.first[level], layout.sizes[level])  # (Q * N, K)
        log_probs = level_log_probs(logits, trie, level, nodes)
        total = total + log_probs.gather(1, flat[:, level : level + 1]).squeeze(1)
        nodes = advance(trie, level, nodes, flat[:, level], torch.isfinite(total))
    return total.view(queries, count)
