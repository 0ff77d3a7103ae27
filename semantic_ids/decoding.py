"""Trie-constrained beam search: the one decoder that evaluation and the service share.

The prompt ends with ``[REC][SEM_START]``, so generation writes exactly one code token per level
and then ``[SEM_END]``. ``TrieLogitsProcessor`` adds a -inf mask so that every step can only pick
a code that extends the beam's prefix to an existing ID. It is vectorised: each step finds every
beam's trie node with one gather per generated token and builds the mask with one more.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from semantic_ids.ids import REC, SEM_END, SEM_START, IdScheme, SemanticId, code_token
from semantic_ids.trie import PrefixTrie

logger = logging.getLogger(__name__)


def build_prompt(query: str) -> str:
    """The model input for a query. Short on purpose: prompt length dominates CPU latency."""
    return f"{' '.join(query.split())}{REC}{SEM_START}"


class TokenizerLike(Protocol):
    pad_token_id: int | None

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]: ...

    def __call__(self, text: list[str], **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class CodeTokenIds:
    """Where each level's code tokens sit in the vocabulary: contiguous, ``first[level] + code``."""

    first: tuple[int, ...]
    sizes: tuple[int, ...]
    sem_start: int
    sem_end: int

    @classmethod
    def from_tokenizer(cls, tokenizer: TokenizerLike, scheme: IdScheme) -> CodeTokenIds:
        firsts = []
        for level, size in enumerate(scheme.codebook_sizes):
            ids = tokenizer.convert_tokens_to_ids([code_token(level, code) for code in range(size)])
            if ids != list(range(ids[0], ids[0] + size)):
                raise ValueError(f"the tokenizer's level-{level} code tokens are missing or not contiguous")
            firsts.append(ids[0])
        start, end = tokenizer.convert_tokens_to_ids([SEM_START, SEM_END])
        return cls(first=tuple(firsts), sizes=scheme.codebook_sizes, sem_start=start, sem_end=end)


class TrieLogitsProcessor:
    """A transformers ``LogitsProcessor`` that keeps every beam inside the prefix trie.

    Rows whose prefix has already left the trie (possible only when beams outnumber the valid
    continuations and beam search had to fill a slot with a -inf candidate) get an all -inf row,
    so their score stays -inf and the decoder drops them.
    """

    def __init__(self, trie: PrefixTrie, token_ids: CodeTokenIds, prompt_length: int) -> None:
        self.trie = trie
        self.token_ids = token_ids
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_length
        rows = input_ids.shape[0]
        nodes = torch.zeros(rows, dtype=torch.long, device=input_ids.device)  # (rows,)
        for level in range(min(step, len(self.trie.children))):
            codes = input_ids[:, self.prompt_length + level] - self.token_ids.first[level]  # (rows,)
            in_range = (codes >= 0) & (codes < self.token_ids.sizes[level]) & (nodes >= 0)
            table = self.trie.children[level]
            child = table[nodes.clamp(min=0), codes.clamp(0, table.shape[1] - 1)].long()
            nodes = torch.where(in_range, child, torch.full_like(child, -1))
        masked = torch.full_like(scores, float("-inf"))
        alive = (nodes >= 0).unsqueeze(1)  # (rows, 1)
        if step < len(self.trie.children):
            first, size = self.token_ids.first[step], self.token_ids.sizes[step]
            allowed = (self.trie.children[step][nodes.clamp(min=0)] >= 0) & alive  # (rows, K_step)
            window = scores[:, first : first + size]
            masked[:, first : first + size] = torch.where(allowed, window, float("-inf"))
        else:
            end = self.token_ids.sem_end
            masked[:, end : end + 1] = torch.where(alive, scores[:, end : end + 1], float("-inf"))
        # Renormalise over what is allowed, so a score is a probability under the constraint.
        has_any = torch.isfinite(masked).any(dim=1, keepdim=True)
        normalised = torch.where(has_any, masked, torch.zeros_like(masked)).log_softmax(dim=-1)
        return torch.where(has_any & torch.isfinite(masked), normalised, masked)  # type: ignore[return-value]


@dataclass(frozen=True)
class Candidate:
    semantic_id: SemanticId
    score: float  # probability of this ID under the constrained model, in (0, 1]


class ConstrainedDecoder:
    """Batched beam search over a causal LM whose output is constrained to the trie."""

    def __init__(self, model: Any, tokenizer: Any, trie: PrefixTrie) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.trie = trie
        self.token_ids = CodeTokenIds.from_tokenizer(tokenizer, trie.scheme)
        self.device = next(model.parameters()).device
        trie.to(self.device)

    @torch.inference_mode()
    def decode(
        self, queries: list[str], *, num_beams: int, top_k: int, constrained: bool = True
    ) -> list[list[Candidate]]:
        """The ``top_k`` best existing IDs per query, best first (fewer when fewer exist)."""
        if not queries:
            return []
        num_beams = max(num_beams, top_k)
        batch = self.tokenizer(
            [build_prompt(query) for query in queries], return_tensors="pt", padding=True
        ).to(self.device)
        prompt_length = batch["input_ids"].shape[1]
        processors = []
        if constrained:
            processors.append(TrieLogitsProcessor(self.trie, self.token_ids, prompt_length))
        output = self.model.generate(
            **batch,
            logits_processor=processors,
            num_beams=num_beams,
            num_return_sequences=num_beams,
            max_new_tokens=self.trie.scheme.levels + 1,
            eos_token_id=self.token_ids.sem_end,
            pad_token_id=self.tokenizer.pad_token_id,
            do_sample=False,
            length_penalty=0.0,
            early_stopping=True,
            return_dict_in_generate=True,
            output_scores=True,
        )
        generated = output.sequences[:, prompt_length:].tolist()
        scores = output.sequences_scores.float().exp().tolist()
        results: list[list[Candidate]] = []
        for query_index in range(len(queries)):
            rows = range(query_index * num_beams, (query_index + 1) * num_beams)
            candidates: list[Candidate] = []
            seen: set[SemanticId] = set()
            for row in rows:
                semantic_id = self._to_semantic_id(generated[row])
                if semantic_id is None or semantic_id in seen or scores[row] <= 0.0:
                    continue
                seen.add(semantic_id)
                candidates.append(Candidate(semantic_id, scores[row]))
            candidates.sort(key=lambda candidate: -candidate.score)
            results.append(candidates[:top_k])
        return results

    def _to_semantic_id(self, token_ids: list[int]) -> SemanticId | None:
        """The ID a generated sequence spells, or None when it is not an existing ID."""
        levels = self.trie.scheme.levels
        codes = [token - self.token_ids.first[level] for level, token in enumerate(token_ids[:levels])]
        if len(codes) != levels:
            return None
        if any(not 0 <= code < size for code, size in zip(codes, self.token_ids.sizes, strict=True)):
            return None
        semantic_id = SemanticId(tuple(codes))
        return semantic_id if semantic_id in self.trie else None
