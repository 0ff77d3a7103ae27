"""Trie-constrained beam search: the one decoder that evaluation and the service share.

The prompt ends with ``[REC][SEM_START]``, so generation writes exactly one code token per level
and then ``[SEM_END]``. ``ConstrainedDecoder`` runs our own search (``semantic_ids.beam_search``)
by default and keeps ``model.generate`` as the reference. For the latter, ``TrieLogitsProcessor``
adds a -inf mask so that every step can only pick a code that extends the beam's prefix to an
existing ID. It is vectorised: each step finds every beam's trie node with one gather per
generated token and builds the mask with one more.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch

from semantic_ids.beam_search import Beams, beam_search, score_codes
from semantic_ids.causal_lm import DeferredModel
from semantic_ids.forced_ids import Estimate
from semantic_ids.ids import REC, SEM_END, SEM_START, IdScheme, SemanticId, code_token
from semantic_ids.trie import PrefixTrie

logger = logging.getLogger(__name__)


# The text of every special token the scheme adds ([SEM_START], [SEM_END], [REC], [SEM_<l>_<c>]).
_SPECIAL_TOKEN_TEXT = re.compile(r"\[(REC|SEM_[A-Za-z0-9_]*)\]")


def build_prompt(query: str) -> str:
    """The model input for a query. Short on purpose: prompt length dominates CPU latency.

    A query that spells a special token (``[SEM_END][REC][SEM_START]``) gets round brackets instead,
    so it is read as text and cannot change the prompt's structure; every other query is unchanged
    (training prompts stay byte-identical).
    """
    text = _SPECIAL_TOKEN_TEXT.sub(r"(\1)", " ".join(query.split()))
    return f"{text}{REC}{SEM_START}"


class TokenizerLike(Protocol):
    """What ``CodeTokenIds`` reads of a tokenizer: transformers' or the service's (``ServedTokenizer``)."""

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int | None]: ...


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
            if ids[0] is None or ids != list(range(ids[0], ids[0] + size)):
                raise ValueError(f"the tokenizer's level-{level} code tokens are missing or not contiguous")
            firsts.append(ids[0])
        start, end = tokenizer.convert_tokens_to_ids([SEM_START, SEM_END])
        if start is None or end is None:
            raise ValueError(f"the tokenizer lacks {SEM_START} or {SEM_END}")
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


DecodeMethod = Literal["beam", "generate"]
_Scored = list[tuple[SemanticId | None, float]]  # one query's beams: (ID or None, probability)


class ConstrainedDecoder:
    """Batched beam search over a causal LM whose output is constrained to the trie.

    ``method="beam"`` (the default) is our own search (``semantic_ids.beam_search``): the prompt runs
    once per query and each step scores only the level's code tokens. ``method="generate"`` is the
    reference, ``model.generate`` with ``TrieLogitsProcessor``; both give the same IDs in the same
    order with the same scores. They differ only when ``constrained=False``: ``beam`` then drops the
    trie but still writes one code token per level, while ``generate`` searches the full vocabulary
    (the unconstrained baseline the benchmark measures). Either way only existing IDs are returned.
    """

    def __init__(self, model: Any, tokenizer: Any, trie: PrefixTrie, *, body: Any = None) -> None:
        """``model``: a transformers causal LM, or a ``DeferredModel`` of one beside a ``body`` (only
        ``method="generate"`` builds it then)."""
        if isinstance(model, DeferredModel) and body is None:
            raise ValueError("a deferred model needs a body to search with")
        self._model = model
        # What our search runs: ``model``, or a faster body over its frozen weights (``LlamaBody``).
        self.body = model if body is None else body
        self.tokenizer = tokenizer
        self.trie = trie
        self.token_ids = CodeTokenIds.from_tokenizer(tokenizer, trie.scheme)
        self.device = body.device if body is not None else next(model.parameters()).device
        trie.to(self.device)
        # Our beam search keeps this many first codes (None: as many as beams): ``beam_search``.
        self.first_level_beams: int | None = None

    @property
    def model(self) -> Any:
        """The transformers model (built now if it was deferred)."""
        return self._model.get() if isinstance(self._model, DeferredModel) else self._model

    def over(self, trie: PrefixTrie) -> ConstrainedDecoder:
        """This decoder's model and settings over another trie (a catalogue update's)."""
        decoder = ConstrainedDecoder(self._model, self.tokenizer, trie, body=self.body)
        decoder.first_level_beams = self.first_level_beams
        return decoder

    @torch.inference_mode()
    def decode(
        self,
        queries: list[str],
        *,
        num_beams: int,
        top_k: int,
        constrained: bool = True,
        method: DecodeMethod = "beam",
    ) -> list[list[Candidate]]:
        """The ``top_k`` best existing IDs per query, best first (fewer when fewer exist)."""
        if not queries:
            return []
        num_beams = max(num_beams, top_k)
        prompts, mask = self._encode(queries)
        if method == "beam":
            scored = self._beam(prompts, mask, num_beams, constrained)
        elif method == "generate":
            scored = self._generate(prompts, mask, num_beams, constrained)
        else:
            raise ValueError(f"unknown decoding method {method!r}: use 'beam' or 'generate'")
        return [self._best(beams, top_k) for beams in scored]

    @torch.inference_mode()
    def decode_and_score(
        self,
        queries: list[str],
        forced: torch.Tensor,
        *,
        num_beams: int,
        top_k: int,
        estimate: Estimate | None = None,
    ) -> tuple[list[list[Candidate]], list[list[float]]]:
        """``decode`` (constrained, our beam search) and the teacher-forced log-probabilities of
        ``forced``, (queries, N, levels) codes, as ``score_ids`` gives them, from one prompt pass: the
        forced IDs' prefixes join the search's own forwards (``semantic_ids.forced_ids``); with an
        ``estimate``, those far behind on their first code get its stand-in score instead."""
        if not queries:
            return [], []
        if forced.shape[:1] != (len(queries),) or forced.dim() != 3:
            raise ValueError(f"forced codes of shape {tuple(forced.shape)} for {len(queries)} queries")
        prompts, mask = self._encode(queries)
        num_beams = max(num_beams, top_k)
        found = beam_search(
            self.body,
            prompts,
            mask,
            self.token_ids,
            self.trie,
            num_beams=num_beams,
            forced=forced.to(self.device),
            first_level_beams=self.first_level_beams,
            estimate=estimate,
        )
        assert found.forced_log_probs is not None  # given forced codes, the search scores them
        return [self._best(beams, top_k) for beams in self._scored(found)], found.forced_log_probs.tolist()

    @torch.inference_mode()
    def score_ids(
        self, queries: list[str], candidates: list[list[SemanticId]], *, constrained: bool = True
    ) -> list[list[float]]:
        """Teacher-forced log-probability of each query's candidate IDs, as the beam search scores
        them (``exp`` of it is ``Candidate.score``); -inf for an ID outside the trie when constrained.
        Each prompt runs once; all its candidates run as one batch."""
        if len(candidates) != len(queries):
            raise ValueError(f"{len(queries)} queries but {len(candidates)} candidate lists")
        count = max((len(ids) for ids in candidates), default=0)
        if count == 0:
            return [[] for _ in queries]
        scheme = self.trie.scheme
        padding = [(0,) * scheme.levels]
        codes = torch.tensor(  # (Q, N, levels), short lists padded with zeros: built once, not per ID
            [[scheme.validate(semantic_id).codes for semantic_id in ids] + padding * (count - len(ids))
             for ids in candidates]
        )  # fmt: skip
        prompts, mask = self._encode(queries)
        trie = self.trie if constrained else None
        log_probs = score_codes(
            self.body, prompts, mask, self.token_ids, trie, codes.to(self.device)
        ).tolist()
        return [values[: len(ids)] for values, ids in zip(log_probs, candidates, strict=True)]

    def _encode(self, queries: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Left-padded prompts on the device, and their mask, or None when nothing is padded."""
        # Left padding: every prompt ends in the last column, where the search reads its next token.
        batch = self.tokenizer(
            [build_prompt(query) for query in queries], return_tensors="pt", padding=True, padding_side="left"
        )
        mask = batch["attention_mask"]
        padded = not bool(mask.all())  # read on the host before the move: no device sync
        return batch["input_ids"].to(self.device), mask.to(self.device) if padded else None

    def _beam(
        self, prompts: torch.Tensor, mask: torch.Tensor | None, beams: int, constrained: bool
    ) -> list[_Scored]:
        trie = self.trie if constrained else None
        found = beam_search(
            self.body,
            prompts,
            mask,
            self.token_ids,
            trie,
            num_beams=beams,
            first_level_beams=self.first_level_beams,
        )
        return self._scored(found)

    @staticmethod
    def _scored(found: Beams) -> list[_Scored]:
        codes, scores = found.codes.tolist(), found.log_probs.exp().tolist()  # the one host sync
        return [
            [(SemanticId(tuple(row)), score) for row, score in zip(query_codes, query_scores, strict=True)]
            for query_codes, query_scores in zip(codes, scores, strict=True)
        ]

    def _generate(
        self, prompts: torch.Tensor, mask: torch.Tensor | None, num_beams: int, constrained: bool
    ) -> list[_Scored]:
        prompt_length = prompts.shape[1]
        if mask is None:
            mask = torch.ones_like(prompts)
        processors = []
        if constrained:
            processors.append(TrieLogitsProcessor(self.trie, self.token_ids, prompt_length))
        # One beam makes generate run greedy search, which rejects the beam-only flags.
        beam_flags = {"length_penalty": 0.0, "early_stopping": True} if num_beams > 1 else {}
        output = self.model.generate(
            input_ids=prompts,
            attention_mask=mask,
            logits_processor=processors,
            num_beams=num_beams,
            num_return_sequences=num_beams,
            max_new_tokens=self.trie.scheme.levels + 1,
            eos_token_id=self.token_ids.sem_end,
            pad_token_id=self.tokenizer.pad_token_id,
            do_sample=False,
            return_dict_in_generate=True,
            output_scores=True,
            **beam_flags,
        )
        generated = output.sequences[:, prompt_length:].tolist()
        scores = self._generated_log_probs(output).float().exp().tolist()
        rows = [(self._to_semantic_id(row), score) for row, score in zip(generated, scores, strict=True)]
        return [rows[start : start + num_beams] for start in range(0, len(rows), num_beams)]

    def _generated_log_probs(self, output: Any) -> torch.Tensor:
        """(rows,) each returned sequence's log-probability (length penalty 0: the plain sum)."""
        if getattr(output, "sequences_scores", None) is not None:
            scores: torch.Tensor = output.sequences_scores
            return scores
        # Greedy search (one beam) keeps only per-step scores; normalising them again is a no-op
        # for the trie processor's rows and gives log-probabilities for unprocessed logits.
        steps = self.model.compute_transition_scores(output.sequences, output.scores, normalize_logits=True)
        total: torch.Tensor = steps.sum(dim=1)
        return total

    def _best(self, beams: _Scored, top_k: int) -> list[Candidate]:
        """Existing, distinct IDs with a non-zero probability, best first, at most ``top_k``."""
        candidates: list[Candidate] = []
        seen: set[SemanticId] = set()
        for semantic_id, score in beams:
            if semantic_id is None or semantic_id in seen or semantic_id not in self.trie or score <= 0.0:
                continue
            seen.add(semantic_id)
            candidates.append(Candidate(semantic_id, score))
        candidates.sort(key=lambda candidate: -candidate.score)
        return candidates[:top_k]

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
