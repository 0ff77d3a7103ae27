"""The HTTP payloads, layered: an item's catalogue fields, then its semantic ID, then its rank and score."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

RetrievalMode = Literal["hybrid", "generative", "lexical"]  # semantic_ids.hybrid.Mode, spelt out for OpenAPI
Source = Literal["model", "lexical", "dense"]  # semantic_ids.fusion.SOURCES

_MODE_DESCRIPTION = (
    "`hybrid` (default): the model's constrained beams, the lexical retriever's top items and, when the "
    "bundle has item embeddings and its fusion uses them, the dense retriever's nearest items; each "
    "candidate is scored by the model's probability of its semantic ID, by its lexical score and by its "
    "embedding similarity, fused with the bundle's tuned parameters. `generative`: the semantic-ID model "
    "alone (constrained beam search). `lexical`: BM25 over the item text plus typo-tolerant title "
    "matching, no model."
)


class RecommendRequest(BaseModel):
    """Types are strict (``"10"`` is not a k); the configurable upper limits are checked by the service."""

    model_config = ConfigDict(extra="forbid")

    query: StrictStr = Field(description="Free text; surrounding whitespace is trimmed.")
    k: StrictInt = Field(
        default=10, ge=1, description="How many items to return, at most the catalogue size."
    )
    mode: RetrievalMode = Field(default="hybrid", description=_MODE_DESCRIPTION)

    @field_validator("query")
    @classmethod
    def _trimmed_and_not_empty(cls, value: str) -> str:
        trimmed = value.strip()
        if not trimmed:
            raise ValueError("query is empty: write what you are looking for")
        return trimmed

    @field_validator("query")
    @classmethod
    def _valid_unicode(cls, value: str) -> str:
        # JSON can spell lone surrogates ("\ud800"); no tokenizer can encode them.
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(
                f"not valid Unicode text (a lone surrogate at character {error.start})"
            ) from None
        return value


class ItemBase(BaseModel):
    item_id: str
    title: str
    fields: dict[str, Any]


class ItemPublic(ItemBase):
    semantic_id: str = Field(description="Compact form, e.g. 12-7-33-0.")
    semantic_id_tokens: str = Field(description="Token form, e.g. [SEM_START][SEM_0_12]...[SEM_END].")


class ComponentScores(BaseModel):
    model: float | None = Field(
        description="Probability of its semantic ID under the trie-constrained model (null: not asked)."
    )
    lexical: float | None = Field(
        description="Lexical score in [0, 1]: relative BM25 plus title match (null: not asked)."
    )
    dense: float | None = Field(
        description="Cosine similarity in [-1, 1] of the query's and the item's MiniLM embeddings "
        "(null: not asked, or the bundle's hybrid mode has no dense source).",
    )


class RecommendedItem(ItemPublic):
    rank: int = Field(ge=1)
    score: float = Field(
        description="The mode's ranking score: the model probability (generative), the lexical score "
        "(lexical) or the fused score (hybrid: log-probability plus weighted lexical and dense scores, or "
        "reciprocal-rank fusion, as the bundle's manifest says). Higher is better; compare within a response."
    )
    sources: list[Source] = Field(
        description="Which retrievers found this item among their candidates: `model` (a constrained "
        "beam), `lexical` (BM25 and title match), `dense` (nearest item embeddings)."
    )
    scores: ComponentScores = Field(description="The component scores behind `score`.")


class RecommendResponse(BaseModel):
    mode: RetrievalMode = Field(description="The retrieval mode that produced the ranking.")
    items: list[RecommendedItem]
    model: str = Field(description="The bundle id that produced the ranking.")
    timing_ms: float = Field(description="Time spent inside the service for this request.")


class ErrorResponse(BaseModel):
    error: str = Field(description="A stable machine-readable code, e.g. invalid_semantic_id.")
    detail: str = Field(description="What went wrong and what to fix.")
    request_id: str | None = Field(default=None, description="Set on 500s: quote it when reporting.")


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    bundle: str | None = None
    catalogue_items: int | None = None
    reason: str | None = None


class ItemChangeOutcome(BaseModel):
    item_id: str
    action: Literal["added", "updated", "unchanged", "deleted"]
    semantic_id: str | None = Field(description="Its ID now, compact form (null: deleted).")
    previous_semantic_id: str | None = Field(
        description="Its ID before the change (null: a new item). An ID that changed, or a deleted item's, "
        "is retired and never given to another item."
    )
    reason: str = Field(
        description="Why it has this ID: its content's RQ-VAE codes, or a neighbour's prefix."
    )


class CatalogueChangeResponse(BaseModel):
    items: list[ItemChangeOutcome]
    counts: dict[str, int] = Field(description="Items per action.")
    catalogue_hash: str = Field(description="The content hash of the catalogue served from now on.")
    item_count: int
    overlay_version: int = Field(description="The overlay version on disk (0: the bundle as trained).")
    seconds: float = Field(description="Time to apply (0 when nothing changed).")
