"""Semantic IDs: the code tuple every item carries, in its token form and its compact form.

Token form (what the LLM reads and writes): ``[SEM_START][SEM_0_12][SEM_1_7][SEM_2_33][SEM_3_0][SEM_END]``.
Compact form (URLs, JSON, the database): ``12-7-33-0``. Both parse to the same codes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

SEM_START = "[SEM_START]"
SEM_END = "[SEM_END]"
REC = "[REC]"

# One canonical spelling per ID: ASCII digits only (``\d`` would take Arabic-Indic or fullwidth digits),
# no leading zeros, no surrounding whitespace; so one item is reachable under one URL.
_LEVEL = r"(0|[1-9][0-9]{0,2})"
_CODE = r"(0|[1-9][0-9]{0,4})"
_CODE_TOKEN = re.compile(rf"\[SEM_{_LEVEL}_{_CODE}\]")
_TOKEN_FORM = re.compile(rf"\[SEM_START\]((?:\[SEM_{_LEVEL}_{_CODE}\])+)\[SEM_END\]")
_COMPACT_FORM = re.compile(rf"{_CODE}(?:-{_CODE})*")
MAX_LEVELS = 16


class InvalidSemanticId(ValueError):
    """A string or code tuple that is not a well-formed semantic ID."""


def code_token(level: int, code: int) -> str:
    """The special token for ``code`` at ``level``, e.g. ``[SEM_1_7]``."""
    return f"[SEM_{level}_{code}]"


@dataclass(frozen=True, slots=True, order=True)
class SemanticId:
    """An item's codes, one per level; the last level is the disambiguation code."""

    codes: tuple[int, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.codes) <= MAX_LEVELS:
            raise InvalidSemanticId(f"a semantic ID has 1 to {MAX_LEVELS} codes, got {len(self.codes)}")
        for code in self.codes:
            if isinstance(code, bool) or not isinstance(code, int) or code < 0:
                raise InvalidSemanticId(f"codes must be non-negative integers, got {code!r}")

    @classmethod
    def from_codes(cls, codes: Iterable[int | str]) -> SemanticId:
        """The ID of a code list as stored in JSON (ints, or strings of digits)."""
        return cls(tuple(int(code) for code in codes))

    @property
    def compact(self) -> str:
        return "-".join(str(code) for code in self.codes)

    @property
    def tokens(self) -> str:
        return SEM_START + "".join(self.code_tokens()) + SEM_END

    def code_tokens(self) -> list[str]:
        return [code_token(level, code) for level, code in enumerate(self.codes)]

    @classmethod
    def parse(cls, text: str) -> SemanticId:
        """Parse either form, canonical spelling only; anything else raises ``InvalidSemanticId``."""
        if not isinstance(text, str):
            raise InvalidSemanticId(f"expected a string, got {type(text).__name__}")
        if not text.strip():
            raise InvalidSemanticId("empty semantic ID")
        if text.startswith("["):
            return cls._parse_tokens(text)
        if _COMPACT_FORM.fullmatch(text):
            return cls(tuple(int(part) for part in text.split("-")))
        raise InvalidSemanticId(
            f"{text[:80]!r} is not a semantic ID: use the compact form '12-7-33-0' "
            "or the token form '[SEM_START][SEM_0_12]...[SEM_END]' (ASCII digits, no leading zeros or spaces)"
        )

    @classmethod
    def _parse_tokens(cls, text: str) -> SemanticId:
        match = _TOKEN_FORM.fullmatch(text)
        if match is None:
            raise InvalidSemanticId(
                f"{text[:80]!r} is not a token-form semantic ID: expected [SEM_START], "
                "one [SEM_<level>_<code>] per level, then [SEM_END]"
            )
        codes: list[int] = []
        for expected_level, (level, code) in enumerate(_CODE_TOKEN.findall(match.group(1))):
            if int(level) != expected_level:
                raise InvalidSemanticId(
                    f"token-form levels must count up from 0; found level {int(level)} "
                    f"where level {expected_level} belongs"
                )
            codes.append(int(code))
        return cls(tuple(codes))


@dataclass(frozen=True, slots=True)
class IdScheme:
    """The shape of the IDs a bundle uses: one codebook size per level (disambiguation last)."""

    codebook_sizes: tuple[int, ...]

    @property
    def levels(self) -> int:
        return len(self.codebook_sizes)

    def validate(self, semantic_id: SemanticId) -> SemanticId:
        """Return ``semantic_id`` if it fits this scheme, else raise saying what does not fit."""
        if len(semantic_id.codes) != self.levels:
            raise InvalidSemanticId(
                f"semantic ID {semantic_id.compact!r} has {len(semantic_id.codes)} codes; "
                f"this catalogue uses {self.levels}"
            )
        for level, (code, size) in enumerate(zip(semantic_id.codes, self.codebook_sizes, strict=True)):
            if code >= size:
                raise InvalidSemanticId(
                    f"code {code} at level {level} is out of range: level {level} has codes 0..{size - 1}"
                )
        return semantic_id

    def parse(self, text: str) -> SemanticId:
        return self.validate(SemanticId.parse(text))

    def all_tokens(self) -> list[str]:
        """Every special token the scheme needs, in a fixed order (added to the tokenizer as-is)."""
        tokens = [SEM_START, SEM_END, REC]
        for level, size in enumerate(self.codebook_sizes):
            tokens.extend(code_token(level, code) for code in range(size))
        return tokens
