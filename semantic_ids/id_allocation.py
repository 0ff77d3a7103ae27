"""Semantic IDs for items that join a served catalogue after training: the cold-start half of the
semantic-ID promise (TIGER). The bundle's frozen RQ-VAE encodes the new item's embedding into codes
whose prefixes the fine-tuned model already writes for similar items; the last code, the
disambiguation code, is the lowest one no item holds or ever held under that prefix.

The disambiguation level has only the codes the bundle's tokenizer has tokens for (the largest
collision group at training time). When every one of them is taken under the item's own codes, the
item goes to the nearest other code of the last RQ level that still has a free slot: a neighbour in
the RQ-VAE's own latent space, which is what a prefix means. An ID once retired (its item deleted, or
moved by a change of content) is never given again, so a client holding it never gets another item.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from semantic_ids.ids import IdScheme, SemanticId

if TYPE_CHECKING:  # the quantiser's library pulls in torch's compiler stack: not for the service's start
    from semantic_ids.rqvae import SemanticRQVAE

Placement = Literal["own", "neighbour", "kept"]


class IdSpaceFull(RuntimeError):
    """No free semantic ID is left near an item: the IDs need retraining with more codes."""


@dataclass(frozen=True)
class Allocation:
    semantic_id: SemanticId
    placement: Placement  # own: its RQ-VAE codes; neighbour: the nearest free prefix; kept: unchanged ID
    reason: str


class IdAllocator:
    """Allocates IDs of ``scheme`` (RQ levels, then the disambiguation level) with a frozen RQ-VAE."""

    def __init__(self, rqvae: SemanticRQVAE, scheme: IdScheme) -> None:
        if rqvae.levels != scheme.levels - 1 or any(
            size != rqvae.codebook_size for size in scheme.codebook_sizes[:-1]
        ):
            raise ValueError(
                f"an RQ-VAE of {rqvae.levels} x {rqvae.codebook_size} codes cannot give IDs of "
                f"codebook sizes {list(scheme.codebook_sizes)}"
            )
        self.rqvae = rqvae.eval()
        self.scheme = scheme

    @torch.inference_mode()
    def preferences(self, vectors: np.ndarray) -> np.ndarray:
        """(items, K, levels - 1) RQ code tuples per item, best first: its own codes, then the other
        codes of the last RQ level by the distance of its residual to them."""
        if len(vectors) == 0:
            return np.zeros((0, self.rqvae.codebook_size, self.rqvae.levels), dtype=np.int64)
        latent = self.rqvae.encode(torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)))
        _, codes, _ = self.rqvae.quantize(latent)  # (items, levels - 1)
        codewords = self.rqvae.quantizer.get_codes_from_indices(codes)  # (levels - 1, items, dim)
        residual = latent - codewords[:-1].sum(dim=0)  # what the last level quantises, (items, dim)
        distances = torch.cdist(residual, self.rqvae.quantizer.codebooks[-1])  # (items, K)
        order = distances.argsort(dim=1)  # the own last code first: it is the nearest
        prefix = codes[:, :-1].unsqueeze(1).expand(-1, order.shape[1], -1)  # (items, K, levels - 2)
        return torch.cat([prefix, order.unsqueeze(2)], dim=2).numpy().astype(np.int64)

    def allocate(
        self,
        vectors: np.ndarray,
        taken: Iterable[SemanticId],
        current: Sequence[SemanticId | None],
    ) -> list[Allocation]:
        """One allocation per item (rows of ``vectors``, in order). ``taken``: every ID served or
        retired; ``current``: each item's ID today (None: a new item), kept while its content still
        maps to that ID's prefix. Items allocated earlier in the call take their IDs from later ones."""
        used: dict[tuple[int, ...], set[int]] = {}
        for semantic_id in taken:
            used.setdefault(semantic_id.codes[:-1], set()).add(semantic_id.codes[-1])
        slots = self.scheme.codebook_sizes[-1]
        out = []
        for vector, options, now in zip(vectors, self.preferences(vectors), current, strict=True):
            if now is not None:  # its own slot is free to it: an unchanged item keeps its ID
                used.get(now.codes[:-1], set()).discard(now.codes[-1])
            try:
                allocation = self._first_free(options, used, slots, now)
            except IdSpaceFull:  # its whole last level is taken: any prefix, nearest first
                allocation = self._first_free(self._everywhere(vector, options[0]), used, slots, now)
            if now is not None and allocation.semantic_id.codes[:-1] == now.codes[:-1]:
                prefix = _compact(now.codes[:-1])
                allocation = Allocation(now, "kept", f"its content still belongs under {prefix}")
            for held in (allocation.semantic_id, now):  # a moved item's old ID stays retired
                if held is not None:
                    used.setdefault(held.codes[:-1], set()).add(held.codes[-1])
            out.append(allocation)
        return out

    @torch.inference_mode()
    def _everywhere(self, vector: np.ndarray, own: np.ndarray) -> np.ndarray:
        """(prefixes, levels - 1) every RQ code tuple, nearest to the item's latent first (own first);
        only for ID spaces of at most 2^16 prefixes, where the last level's neighbours can all be taken."""
        sizes = [self.rqvae.codebook_size] * self.rqvae.levels
        if math.prod(sizes) > 1 << 16:
            return own[None]
        grid = torch.cartesian_prod(*(torch.arange(size) for size in sizes)).reshape(-1, len(sizes))
        points = self.rqvae.quantized_from_codes(grid)  # (prefixes, dim)
        latent = self.rqvae.encode(torch.from_numpy(np.asarray(vector, dtype=np.float32)[None]))
        order = torch.cdist(latent, points)[0].argsort()
        return grid[order].numpy().astype(np.int64)

    def _first_free(
        self, options: np.ndarray, used: dict[tuple[int, ...], set[int]], slots: int, now: SemanticId | None
    ) -> Allocation:
        own = tuple(int(code) for code in options[0])
        for rank, option in enumerate(options):
            prefix = tuple(int(code) for code in option)
            free = next((code for code in range(slots) if code not in used.get(prefix, ())), None)
            if free is None:
                continue
            semantic_id = SemanticId((*prefix, free))
            moved = "" if now is None else f" (it was {now.compact}: its content moved)"
            if rank == 0:
                return Allocation(semantic_id, "own", f"its content encodes to {_compact(own)}{moved}")
            reason = (
                f"its content encodes to {_compact(own)}, whose {slots} IDs are all taken: placed under "
                f"the nearest prefix with a free one, {_compact(prefix)}{moved}"
            )
            return Allocation(semantic_id, "neighbour", reason)
        raise IdSpaceFull(
            f"no free semantic ID near {_compact(own)}: every ID it could take is taken; "
            "retrain the IDs (`semid pipeline`) with more codes"
        )


def _compact(codes: tuple[int, ...]) -> str:
    return "-".join(str(code) for code in codes)
