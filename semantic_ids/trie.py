"""The prefix trie over existing semantic IDs, stored as one dense child table per level.

``children[level][node, code]`` is the index of the node reached from ``node`` (a prefix of length
``level``) by ``code``, or -1 when no item has that prefix. Dense tables let the decoder find every
beam's node and its allowed codes with a few tensor gathers per step, with no Python loop over beams.

``rest[level][node]`` is the rest of the one ID below ``node`` when only one ID has that prefix, or
-1s. Past such a node every step has exactly one allowed code, whose constrained log-probability is
0, so the search can write the rest without running the model (``beam_search``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from semantic_ids.ids import IdScheme, InvalidSemanticId, SemanticId


class PrefixTrie:
    def __init__(self, ids: Iterable[SemanticId], scheme: IdScheme) -> None:
        self.scheme = scheme
        self._ids: frozenset[tuple[int, ...]] = frozenset(scheme.validate(sid).codes for sid in ids)
        if not self._ids:
            raise InvalidSemanticId("cannot build a prefix trie from zero semantic IDs")
        # node_of[level] maps a prefix of length `level` to its node index at that level (sorted order).
        node_of: list[dict[tuple[int, ...], int]] = []
        for level in range(self.scheme.levels + 1):
            prefixes = sorted({codes[:level] for codes in self._ids})
            node_of.append({prefix: index for index, prefix in enumerate(prefixes)})
        self.children: list[torch.Tensor] = self._build_tables(node_of)
        self.rest: list[torch.Tensor] = self._build_rest(node_of)

    def _build_tables(self, node_of: list[dict[tuple[int, ...], int]]) -> list[torch.Tensor]:
        tables = []
        for level, size in enumerate(self.scheme.codebook_sizes):
            table = torch.full((len(node_of[level]), size), -1, dtype=torch.int32)  # (nodes_l, K_l)
            for prefix, child in node_of[level + 1].items():
                table[node_of[level][prefix[:-1]], prefix[-1]] = child
            tables.append(table)
        return tables

    def _build_rest(self, node_of: list[dict[tuple[int, ...], int]]) -> list[torch.Tensor]:
        """Per level (0 .. levels - 1): (nodes_level, levels - level) codes of the only ID below, or -1s."""
        levels = self.scheme.levels
        tables = []
        for level in range(levels):
            below: dict[int, list[tuple[int, ...]]] = {node: [] for node in node_of[level].values()}
            for codes in self._ids:
                below[node_of[level][codes[:level]]].append(codes[level:])
            table = torch.full((len(below), levels - level), -1, dtype=torch.int64)
            for node, rests in below.items():
                if len(rests) == 1:
                    table[node] = torch.tensor(rests[0])
            tables.append(table)
        return tables

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, semantic_id: object) -> bool:
        return isinstance(semantic_id, SemanticId) and semantic_id.codes in self._ids

    def allowed_codes(self, prefix: tuple[int, ...]) -> list[int]:
        """Codes that extend ``prefix`` towards at least one existing ID (empty past the last level)."""
        node = 0
        for level, code in enumerate(prefix):
            if level >= self.scheme.levels or not 0 <= code < self.scheme.codebook_sizes[level]:
                return []
            node = int(self.children[level][node, code])
            if node < 0:
                return []
        if len(prefix) >= self.scheme.levels:
            return []
        return torch.nonzero(self.children[len(prefix)][node] >= 0).flatten().tolist()

    def to(self, device: torch.device | str) -> PrefixTrie:
        self.children = [table.to(device) for table in self.children]
        self.rest = [table.to(device) for table in self.rest]
        return self
