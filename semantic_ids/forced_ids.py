"""Teacher-forced scores of given IDs, computed inside the beam search's own forwards.

Hybrid retrieval needs the model's probability of IDs the beams may miss (the lexical and dense finds).
A pass of their own (``score_codes``) runs the prompt again and one more forward: on the 2-core CPU a
forward costs about 50 ms before it does any work, so that pass cost more than half a generative query.
Here the IDs ride along with the search instead: their level-0 log-probabilities come from the prompt's
own logits, and at each later level the prefixes they need join the beams' rows in the forward that
runs anyway, extending rows of the same KV cache.

A prefix runs once per query however many IDs and beams share it. Each cache row is a prefix, keyed by
its query and codes in mixed radix (``((q * K_0 + c_0) * K_1 + c_1) ...``); at every level the rows are
the beams' prefixes (first, laid out as the search lays them out) and then the prefixes only the forced
IDs need, each extending the row of its own parent prefix. A forced ID the beams also found costs
nothing; two that share a prefix share its row. And a prefix past the last level where the ID's path
through the trie branches needs no row at all: where the trie allows one code, the constrained
log-probability of that code is exactly 0 whatever the logits (on demo IDs of 32x32x32x3 for 1,000 items,
35% of items branch last at level 1, 59% at level 2, 5% at level 3; with 64x64x5, 77 % need no row past
level 1).

Scores are what ``score_codes`` (and the beam search) give the same ID: at each level a log-softmax over
the codes the trie allows after the ID's prefix (all of the level's codes when unconstrained), summed.
No per-ID Python: keys, look-ups and scores are tensor operations over all forced IDs at once.

With an ``Estimate``, an ID whose first code the model finds far less likely than the query's best forced
ID's first code runs no row after the first level: each later level up to the last where its path
branches counts a fixed log-probability instead. Hybrid retrieval's finds are that many rows in every
forward (on the demo bundle 22.6 single-token rows a query against the beams' 12.3); the finds far
behind on the first code are those whose fused rank their lexical and dense evidence decides, not the
model's later levels (bench/HISTORY.md, 2026-12-06, sixth session).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from semantic_ids.search_steps import advance, level_log_probs
from semantic_ids.trie import PrefixTrie


@dataclass(frozen=True)
class Estimate:
    """Forced IDs whose first code's log-probability is more than ``margin`` below the best first code
    among their query's forced IDs run no row after the first level; each later level up to the last
    where their path branches adds ``per_level`` (a log-probability, negative) to their score instead."""

    margin: float
    per_level: float


@dataclass(frozen=True)
class ExtraRows:
    """The rows a level adds after the beams' rows: prefixes only the forced IDs need."""

    parents: torch.Tensor  # (E,) row of the cache, as it stands before the reorder, that each extends
    codes: torch.Tensor  # (E,) the code each feeds: its prefix's last
    queries: torch.Tensor  # (E,) the query each belongs to


def _lookup(table: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """(R,) distinct keys, (n,) keys all present in it -> (n,) their positions in ``table``."""
    order = table.argsort()
    return order[torch.searchsorted(table[order], keys)]


def _extend(keys: torch.Tensor, codes: torch.Tensor, size: int) -> torch.Tensor:
    """Keys of the prefixes one code longer."""
    return keys * size + codes


def _branching_ahead(trie: PrefixTrie | None, codes: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """(rows, levels) codes -> (levels, rows) bool: whether the trie allows more than one code at this
    level or a later one along each ID's path (the level's logits matter); all True unconstrained."""
    rows, levels = codes.shape
    if trie is None:
        return torch.ones(levels, rows, dtype=torch.bool, device=codes.device)
    nodes = torch.zeros(rows, dtype=torch.long, device=codes.device)
    branching = []
    for level in range(levels):
        choices = (trie.children[level][nodes.clamp(min=0)] >= 0).sum(dim=1)  # (rows,)
        branching.append((nodes >= 0) & (choices > 1))
        nodes = advance(trie, level, nodes, codes[:, level], nodes >= 0)
    # Reversed cumulative "any": branching at this level or after it.
    return torch.stack(branching).flip(0).long().cummax(dim=0).values.flip(0) > 0


class ForcedIds:
    """The forced IDs of one search: (queries, N, levels) codes -> (queries, N) log-probabilities."""

    def __init__(
        self,
        codes: torch.Tensor,
        sizes: tuple[int, ...],
        trie: PrefixTrie | None,
        estimate: Estimate | None = None,
    ) -> None:
        queries, count, levels = codes.shape
        self.estimate = estimate
        self.estimated: torch.Tensor | None = None  # (Q * N,) bool: left to the estimate, once chosen
        self.guess: torch.Tensor | None = None  # (Q * N,) the estimate's scores, where it stands in
        self.shape = (queries, count)
        self.sizes = sizes
        self.trie = trie
        self.codes = codes.reshape(queries * count, levels)  # (Q * N, levels)
        query_of = torch.arange(queries, device=codes.device).repeat_interleave(count)  # (Q * N,)
        keys = [query_of]
        for level in range(levels - 1):
            keys.append(_extend(keys[-1], self.codes[:, level], sizes[level]))
        self.keys = torch.stack(keys)  # (levels, Q * N): [l] keys each ID's prefix of length l
        self.needs = _branching_ahead(trie, self.codes, sizes)  # (levels, Q * N): [l] needs its row
        self.table = torch.arange(queries, device=codes.device)  # keys of the cache's rows: the prompts
        self.total = torch.zeros(queries * count, dtype=torch.float32, device=codes.device)
        self.nodes = torch.zeros(queries * count, dtype=torch.long, device=codes.device)

    def score_level(self, level: int, logits: torch.Tensor) -> None:
        """Add level ``level``'s log-probabilities, given (rows, K_level) logits of the cache's rows."""
        # An ID whose path does not branch here reads any row: one allowed code scores 0 whatever the row.
        rows = _lookup(self.table, torch.where(self.needs[level], self.keys[level], self.table[0]))
        log_probs = level_log_probs(logits[rows], self.trie, level, self.nodes)  # (Q * N, K_level)
        code = self.codes[:, level]
        self.total = self.total + log_probs.gather(1, code.unsqueeze(1)).squeeze(1)
        self.nodes = advance(self.trie, level, self.nodes, code, torch.isfinite(self.total))

    def extra_rows(self, beam_codes: torch.Tensor) -> ExtraRows:
        """The rows to add after the beams' for the next forward, given the beams' (Q, W, length) codes;
        afterwards the cache's rows are the beams' prefixes of ``length`` codes, then these."""
        queries, width, length = beam_codes.shape
        if length == 1 and self.estimate is not None:
            self._leave_to_estimate(self.estimate)
        flat = beam_codes.reshape(queries * width, length)
        beam_keys = torch.arange(queries, device=flat.device).repeat_interleave(width)
        for level in range(length):
            beam_keys = _extend(beam_keys, flat[:, level], self.sizes[level])
        wanted = self.keys[length][self.needs[length]]  # (needed,)
        extra = torch.unique(wanted[~torch.isin(wanted, beam_keys)])  # (E,) sorted, distinct
        last = self.sizes[length - 1]
        parents = _lookup(self.table, torch.div(extra, last, rounding_mode="floor"))
        self.table = torch.cat([beam_keys, extra])
        queries_of = torch.div(extra, math.prod(self.sizes[:length]), rounding_mode="floor")
        return ExtraRows(parents=parents, codes=extra % last, queries=queries_of)

    def branches_from(self, level: int) -> bool:
        """Whether any forced ID's path still branches at ``level`` or later (a host sync)."""
        return bool(self.needs[level].any())

    def score_without_model(self, level: int) -> None:
        """Levels ``level`` on, where no path branches: one allowed code scores 0 whatever the logits,
        an ID off the trie gets -inf; stand-in logits give exactly that without a forward."""
        for rest in range(level, len(self.sizes)):
            self.score_level(rest, torch.zeros(len(self.table), self.sizes[rest], device=self.total.device))

    def _leave_to_estimate(self, estimate: Estimate) -> None:
        """After the first level: the IDs far behind their query's best first code, whose path still
        branches, get their score now (the first code's, plus ``per_level`` for each later level up to the
        last where the path branches) and need no more rows."""
        first = self.total.view(self.shape)  # (Q, N) the first code's log-probabilities
        best = first.max(dim=1, keepdim=True).values
        behind = (first < best - estimate.margin).reshape(-1) & self.needs[1]
        self.estimated = behind
        self.guess = self.total + estimate.per_level * self.needs[1:].sum(dim=0)
        self.needs = self.needs & ~behind  # (levels, Q * N); level 0 is scored already

    def log_probs(self) -> torch.Tensor:
        """(queries, N) each forced ID's log-probability (-inf outside the trie when constrained), or
        the ``Estimate``'s where it stood in."""
        total = self.total
        if self.estimated is not None and self.guess is not None:
            total = torch.where(self.estimated, self.guess, total)
        return total.view(self.shape)
