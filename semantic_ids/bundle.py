"""The artifact bundle: the only thing that crosses from training to serving.

Layout of a bundle folder (written to a temporary sibling, then renamed into place)::

    manifest.json             this schema
    catalogue.jsonl           one item per line: item_id, title, fields, semantic_id (code list)
    tokenizer/                base tokenizer plus the special tokens
    finetuned_layers.safetensors  the fine-tuned top decoder layers and final norm (what training writes)
    adapter/                  or: a peft LoRA adapter (bundles of the retired LoRA-on-every-layer loop)
    new_token_rows.safetensors  trained rows of the added tokens ("embed_tokens", untied "lm_head")
    rqvae.safetensors         the RQ-VAE weights (for assigning IDs to new items later)
    lexical/                  BM25 index of the item text (semantic_ids/lexical.py; no pickle), since schema 2
    dense/                    the items' MiniLM vectors (semantic_ids/dense.py; .npy, no pickle), schema 3
    evaluation.json           the offline evaluation table
    overlays/                 items added, changed and deleted since training (semantic_ids/overlay.py)

Schema 2 adds the optional ``retrieval`` section (the lexical index and the fusion parameters). A
schema-1 manifest still reads: it has no ``retrieval``, and the service builds the lexical index from
``catalogue.jsonl`` at load time with the default fusion parameters. Schema 3 adds the dense index
(``retrieval.dense_index``) and the dense source's fusion parameters; an older manifest reads with the
dense source off.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, overload

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from semantic_ids.ids import IdScheme

SCHEMA_VERSION = 3
READABLE_SCHEMA_VERSIONS = (1, 2, 3)
MANIFEST = "manifest.json"
CATALOGUE = "catalogue.jsonl"
TOKENIZER_DIR = "tokenizer"
ADAPTER_DIR = "adapter"  # LoRA bundles of the retired LoRA-on-every-layer loop: still served
# Top-layers bundles: the fine-tuned decoder layers and final norm, under the causal LM's parameter names.
FINETUNED_LAYERS = "finetuned_layers.safetensors"
NEW_TOKEN_ROWS = "new_token_rows.safetensors"
RQVAE_WEIGHTS = "rqvae.safetensors"
EVALUATION = "evaluation.json"
LEXICAL_DIR = "lexical"
DENSE_DIR = "dense"


class BundleMismatch(RuntimeError):
    """The bundle is not the one the caller was told to serve; the message says what differs."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CatalogueInfo(_Frozen):
    content_hash: str
    item_count: int = Field(ge=1)
    profile: str
    # sha256 of catalogue.jsonl's bytes as written: a load checks the file against it in about a second
    # at a million rows, where recomputing the content hash (every row serialised again) took 15 s.
    # None in bundles written before it: those are checked by their content hash.
    file_sha256: str | None = None


class EmbeddingInfo(_Frozen):
    model: str
    dimensions: int = Field(ge=1)


class SemanticIdInfo(_Frozen):
    rq_levels: int = Field(ge=1)
    codebook_sizes: tuple[int, ...]  # RQ-VAE levels, then the disambiguation level
    collision_rate: float  # share of items whose RQ-VAE codes collide before disambiguation

    @property
    def scheme(self) -> IdScheme:
        return IdScheme(self.codebook_sizes)


class BaseModelInfo(_Frozen):
    name: str
    source: str
    weights_sha256: str


class TokenInfo(_Frozen):
    sem_start: str
    sem_end: str
    rec: str
    code_token_format: str = "[SEM_{level}_{code}]"
    added_count: int


# The query-level signals a learned dense gate reads (``semantic_ids.fusion.gate_features`` computes them).
GATE_FEATURES = (
    "lexical_evidence",  # the best lexical evidence among the candidates, in [0, 1]
    "title_match",  # the best fuzzy title match among them, in [0, 1]
    "model_top_log_prob",  # the model's best beam's log-probability: how sure it is of one item
    "model_top_gap",  # that minus the second beam's: one clear pick, or many alike (a genre)
    "dense_top_cosine",  # the dense source's best cosine similarity
    "beam_dense_overlap",  # the share of the dense finds the beams found too
)


class DenseGate(_Frozen):
    """A logistic gate on the dense term, learned by ``bench/tune_fusion.py``: the dense weight times
    ``sigmoid(bias + sum(weights[f] * feature f))``, in the features' own units (``GATE_FEATURES``)."""

    bias: float
    weights: dict[str, float]

    @model_validator(mode="after")
    def _known_features(self) -> DenseGate:
        if set(self.weights) != set(GATE_FEATURES):
            raise ValueError(f"a dense gate weighs exactly the features {', '.join(GATE_FEATURES)}")
        return self


class FusionParams(_Frozen):
    """How ``hybrid`` mode ranks the model's beams together with the lexical and dense top items."""

    # The defaults are what bench/tune_fusion.py chose on the demo bundle's held-out phrasings
    # (bench/results/fusion_tuning.json): a bundle that was not tuned itself, or predates fusion, gets them.
    method: Literal["linear", "rrf"] = "linear"
    lexical_depth: int = Field(default=10, ge=0, description="lexical candidates added to the beams")
    # linear: log p_model(ID | query) + lexical_weight * lexical score (in [0, 1])
    lexical_weight: float = Field(default=16.0, ge=0.0)
    # rrf: 1 / (rrf_k + model rank) + 1 / (rrf_k + lexical rank), both ranks over the candidates
    rrf_k: float = Field(default=60.0, gt=0.0)
    # The dense source (the item vectors' nearest neighbours of the query's), off by default: a bundle
    # without item vectors, or whose fusion was tuned before it had them, ranks as it did.
    dense_depth: int = Field(default=0, ge=0, description="dense candidates added to the beams")
    # linear: + dense_weight * cosine similarity; rrf: + dense_weight / (rrf_k + dense rank)
    dense_weight: float = Field(default=0.0, ge=0.0)
    # linear: + title_weight * the fuzzy title match (in [0, 1], ``semantic_ids.lexical``) on its own, on
    # top of its share in the lexical score: a typo'd title barely registers with BM25, so the lexical
    # score alone cannot outweigh the model there without outweighing it everywhere. rrf: not used.
    title_weight: float = Field(default=0.0, ge=0.0)
    # linear: the dense term times (1 - the query's best lexical evidence among the candidates): the dense
    # neighbours weigh in where the query matched little lexically (a paraphrase, a genre in other words)
    # and stand back where it named a title or a person. rrf: not used.
    dense_gated: bool = False
    # linear: the dense term times a learned gate on the query's signals instead (``DenseGate``): the
    # lexical evidence alone let a paraphrase's stray word matches shut the dense neighbours out, where the
    # model's own doubt (many beams alike, none sure) says the query asks for a kind, not an item.
    dense_gate: DenseGate | None = None
    # Before the fused score (``semantic_ids.fusion.rank``): candidates meeting more of the query's
    # structured attributes (decade, genre, rating, country, language) first, when ``attributes``; then
    # those whose lexical evidence alone is at least ``decisive_evidence`` (None: no such tier). Bundles
    # written before these tiers read the defaults, which the service has applied since.
    attributes: bool = True
    decisive_evidence: float | None = Field(default=0.8, ge=0.0, le=1.0)
    # A find (lexical or dense) whose first code's log-probability is more than ``estimate_margin`` below
    # the best first code among its query's finds runs no forward rows after the first level: each later
    # level up to the last where its path branches counts ``estimate_per_level`` instead
    # (``semantic_ids.forced_ids.Estimate``). Its rank is then its lexical and dense evidence's, as it was:
    # on 300 held-out training phrasings the same Recall@10 with 15.8 single-token rows a query instead of
    # 24.3; -2 a level, not -6, kept typo'd titles in phrases at 0.95 (0.93 at -6; bench/HISTORY.md,
    # 2026-12-06, sixth session). None: every find runs every level. Bundles written before read these.
    estimate_margin: float | None = Field(default=3.0, gt=0.0)
    estimate_per_level: float = Field(default=-2.0, le=0.0)
    # The share of the request's beams (``max(num_beams, k)``) hybrid's model search keeps, at least one:
    # the lexical and dense finds are candidates beside the beams, so the model need not write as many
    # IDs of its own as it does alone, and every beam is a forward row at every level. 1.0: as many as
    # generative (bundles written before read this). Chosen with ``bench.hybrid_cost`` on training-side
    # queries.
    model_beam_share: float = Field(default=1.0, gt=0.0, le=1.0)
    tuned_on: str = "defaults: the demo bundle's tuning of 2026-11-25, not this bundle's own"
    figures: dict[str, Any] = Field(default_factory=dict)

    @property
    def uses_dense(self) -> bool:
        """Whether the dense source takes part: it adds candidates or weighs in on their scores."""
        return self.dense_depth > 0 or self.dense_weight > 0.0


class RetrievalInfo(_Frozen):
    lexical_index: str | None = LEXICAL_DIR  # folder inside the bundle; None: built at load time
    dense_index: str | None = None  # folder inside the bundle (schema 3); None: no dense source
    fusion: FusionParams = FusionParams()


class Manifest(_Frozen):
    schema_version: int
    bundle_id: str
    created_at: datetime
    catalogue: CatalogueInfo
    embedding: EmbeddingInfo
    semantic_ids: SemanticIdInfo
    base_model: BaseModelInfo
    tokens: TokenInfo
    lora: dict[str, Any]
    training: dict[str, Any]
    evaluation: dict[str, Any]
    retrieval: RetrievalInfo | None = None  # schema 2; None in schema-1 bundles


def catalogue_hash(items: Iterable[Mapping[str, Any]]) -> str:
    """A content hash of a catalogue, independent of key order and line order."""
    lines = sorted(json.dumps(item, sort_keys=True, ensure_ascii=False) for item in items)
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def read_manifest(bundle_dir: Path) -> Manifest:
    path = bundle_dir / MANIFEST
    if not path.is_file():
        raise BundleMismatch(f"{bundle_dir} is not a bundle: it has no {MANIFEST}")
    raw = json.loads(path.read_text())
    version = raw.get("schema_version")
    if version not in READABLE_SCHEMA_VERSIONS:
        readable = ", ".join(str(v) for v in READABLE_SCHEMA_VERSIONS)
        raise BundleMismatch(
            f"bundle {bundle_dir} has schema version {version}; this code reads versions {readable}"
        )
    return Manifest.model_validate(raw)


def check_catalogue(manifest: Manifest, expected_hash: str | None) -> None:
    """Refuse a bundle built for another catalogue than the one being served."""
    if expected_hash is not None and manifest.catalogue.content_hash != expected_hash:
        raise BundleMismatch(
            f"bundle {manifest.bundle_id} was built for catalogue {manifest.catalogue.content_hash[:12]}, "
            f"but the catalogue being served is {expected_hash[:12]}"
        )


def write_manifest(bundle_dir: Path, manifest: Manifest) -> None:
    """Replace a bundle's manifest atomically (a sibling file renamed over it), after validating it again."""
    Manifest.model_validate(manifest.model_dump())
    partial = bundle_dir / f".{MANIFEST}.partial"
    partial.write_text(manifest.model_dump_json(indent=2) + "\n")
    os.replace(partial, bundle_dir / MANIFEST)


def read_catalogue(bundle_dir: Path) -> Iterator[dict[str, Any]]:
    # orjson: a million rows parse in a few seconds instead of twenty (service start-up reads them all).
    with (bundle_dir / CATALOGUE).open("rb") as handle:
        for line in handle:
            if line.strip():
                yield orjson.loads(line)


class CatalogueRows(Sequence[dict[str, Any]]):
    """A bundle catalogue's rows kept as their JSON lines, each parsed when it is read, with the two columns
    every load reads (item ids, semantic IDs) parsed once. A million rows as Python dicts held 2.4 GB of
    the service's memory; as lines, 0.6 GB, and the service reads a whole row only to index or change it.
    A row read is a fresh dict: changing it changes nothing here."""

    def __init__(self, lines: list[bytes]) -> None:
        self._lines = lines
        self.item_ids: list[str] = []
        self.semantic_ids: list[list[Any]] = []  # as stored: each row's codes
        for line in lines:
            row = orjson.loads(line)
            self.item_ids.append(str(row["item_id"]))
            self.semantic_ids.append(row.get("semantic_id"))

    @classmethod
    def read(cls, bundle_dir: Path) -> CatalogueRows:
        with (bundle_dir / CATALOGUE).open("rb") as handle:
            return cls([line for line in handle if line.strip()])

    def __len__(self) -> int:
        return len(self._lines)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [orjson.loads(line) for line in self._lines[index]]
        row: dict[str, Any] = orjson.loads(self._lines[index])
        return row

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for line in self._lines:
            yield orjson.loads(line)


def row_item_ids(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The rows' item ids as strings (a ``CatalogueRows``' without parsing its rows again)."""
    if isinstance(rows, CatalogueRows):
        return rows.item_ids
    return [str(row["item_id"]) for row in rows]


def row_semantic_ids(rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The rows' semantic IDs as stored (code lists; a ``CatalogueRows``' without parsing its rows again)."""
    if isinstance(rows, CatalogueRows):
        return rows.semantic_ids
    return [row["semantic_id"] for row in rows]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def atomic_directory(final_dir: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``final_dir``; rename it into place only if the block succeeds."""
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = final_dir.parent / f".{final_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        if final_dir.exists():
            retired = final_dir.parent / f".{final_dir.name}.old-{os.getpid()}"
            final_dir.rename(retired)
            staging.rename(final_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(final_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


BASE_WEIGHTS = "model.safetensors"


def base_weights_sha256(base_model_dir: Path) -> str:
    """The sha256 of a base-model folder's ``model.safetensors`` (what a manifest pins the base to)."""
    digest = hashlib.sha256()
    with (base_model_dir / BASE_WEIGHTS).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
