"""Catalogue churn: items added, changed and deleted while the service runs, without retraining.

A new item's text is embedded with the bundle's MiniLM and given an ID by the bundle's frozen RQ-VAE
(``semantic_ids.id_allocation``); a changed item keeps its ID unless its content moved it; a deleted
item's ID is retired, never given again. ``CatalogueUpdater.apply`` does one change set all or nothing:

1. validate every item (4xx on bad input, nothing touched), embed, allocate IDs;
2. build what will serve the new catalogue (``prepare``: the service's trie and indexes), off to the side;
3. write the new overlay version and, inside that, the database transaction; a failure of either puts
   the previous overlay back and rolls the database back;
4. only then hand back the new state, which the service swaps in with one reference assignment.

Changes are serialised by a lock; readers never wait for it (they hold the state they started with).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from sqlalchemy import Engine

from app.db.changes import apply_changes
from app.db.models import ITEM_ID_MAX
from app.db.repository import ItemNotFound, echo
from semantic_ids.bundle import (
    CATALOGUE,
    RQVAE_WEIGHTS,
    BundleMismatch,
    Manifest,
    catalogue_hash,
    read_catalogue,
    read_manifest,
    row_item_ids,
    row_semantic_ids,
)
from semantic_ids.dense import DenseIndex, QueryEncoder
from semantic_ids.ids import SemanticId
from semantic_ids.item_text import render_row
from semantic_ids.overlay import Overlay, read_overlay, replacing_overlay

logger = logging.getLogger(__name__)

Action = Literal["added", "updated", "unchanged", "deleted"]
ACTIONS: tuple[Action, ...] = ("added", "updated", "deleted", "unchanged")
Prepared = TypeVar("Prepared")
_SCALARS = (str, int, float, bool)


class ChangeRejected(ValueError):
    """A change set that cannot be applied as sent; the message names the item and what to fix."""


class UpdatesUnavailable(RuntimeError):
    """This service cannot change its catalogue (updates are off, or the bundle has no RQ-VAE)."""


@dataclass(frozen=True)
class ItemUpsert:
    item_id: str
    title: str
    fields: dict[str, Any]

    def row(self, semantic_id: SemanticId) -> dict[str, Any]:
        """The bundle catalogue row of this item under ``semantic_id``."""
        return {
            "item_id": self.item_id,
            "title": self.title,
            "fields": self.fields,
            "semantic_id": list(semantic_id.codes),
        }


@dataclass(frozen=True)
class ItemDelete:
    item_id: str


Change = ItemUpsert | ItemDelete


@dataclass(frozen=True)
class ItemOutcome:
    item_id: str
    action: Action
    semantic_id: str | None  # compact; None once deleted
    previous_semantic_id: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class LiveCatalogue:
    """The served catalogue: base rows as the overlay changes them, their vectors, the retired IDs."""

    rows: Sequence[dict[str, Any]]  # a ``CatalogueRows`` as the bundle was read, a list once changed
    vectors: np.ndarray  # (rows, dimensions) their embeddings, from the bundle's dense index
    retired: frozenset[SemanticId]
    version: int  # the overlay version (0: the base bundle as trained)
    content_hash: str

    @property
    def ids(self) -> list[SemanticId]:
        return [SemanticId.from_codes(codes) for codes in row_semantic_ids(self.rows)]

    def dense_index(self, model: str) -> DenseIndex:
        """Its vectors as the dense index (rows in catalogue order) of embedding model ``model``."""
        return DenseIndex(self.vectors, row_item_ids(self.rows), self.content_hash, model)


@dataclass(frozen=True)
class ChangeReport:
    outcomes: list[ItemOutcome]
    catalogue_hash: str
    item_count: int
    overlay_version: int
    seconds: float  # 0 when nothing changed
    counts: dict[str, int] = field(default_factory=dict)  # per action
    overlay_items: int = 0  # items the overlay now adds, changes or deletes against the bundle


def parse_change(raw: Any, where: str, kinds: Mapping[str, set[str]]) -> Change:
    """One change from its JSON form: an item in the import form (``item_id``, ``title``, any other
    fields, or ``fields`` nested), or ``{"item_id": ..., "delete": true}``."""
    if not isinstance(raw, Mapping):
        raise ChangeRejected(f"{where}: expected a JSON object, got {type(raw).__name__}")
    item_id = _item_id(raw.get("item_id"), where)
    where = f"{where} (item {echo(item_id)})"
    if raw.get("delete") is True:
        if set(raw) - {"item_id", "delete"}:
            raise ChangeRejected(f"{where}: a delete holds only item_id and delete")
        return ItemDelete(item_id)
    title = raw.get("title")
    if not isinstance(title, str) or not title.strip() or "\x00" in title:
        raise ChangeRejected(f"{where}: title must be a non-empty string")
    nested = raw.get("fields", {})
    if not isinstance(nested, Mapping):
        raise ChangeRejected(f"{where}: fields must be a JSON object")
    flat = {key: value for key, value in raw.items() if key not in ("item_id", "title", "fields", "delete")}
    fields = {**nested, **flat}
    for key, value in fields.items():
        _check_field(key, value, where, kinds.get(key))
    kept = {key: value for key, value in fields.items() if value not in (None, "", [])}
    return ItemUpsert(item_id, title.strip(), kept)


def parse_jsonl(body: bytes) -> list[Any]:
    """The JSON values of a JSONL body (blank lines skipped); ``ChangeRejected`` names a bad line."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ChangeRejected(f"the body is not UTF-8 text ({error.reason})") from None
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ChangeRejected(
                    f"line {number}: malformed JSON ({error.msg} at column {error.colno})"
                ) from None
    return lines


def field_kinds(rows: Iterable[Mapping[str, Any]]) -> dict[str, set[str]]:
    """The JSON kinds (string, number, boolean, list) each field of the catalogue holds."""
    kinds: dict[str, set[str]] = {}
    for row in rows:
        for key, value in row.get("fields", {}).items():
            kinds.setdefault(key, set()).add(_kind(value))
    return kinds


class CatalogueUpdater:
    """Applies change sets to one bundle's served catalogue and its database."""

    def __init__(
        self,
        bundle_dir: Path,
        manifest: Manifest,
        base_rows: Sequence[Mapping[str, Any]],
        base_vectors: np.ndarray,
        live: LiveCatalogue,
        encoder: QueryEncoder,
        engine: Engine,
        *,
        max_items: int = 10_000,
    ) -> None:
        # Imported here, not at the top: the quantiser's library pulls in torch's compiler stack (1.5 s of
        # the service's cold start), and a service without an admin token never gives an item an ID.
        from semantic_ids.id_allocation import IdAllocator
        from semantic_ids.rqvae import RQVAEError, load_rqvae

        rqvae_path = bundle_dir / RQVAE_WEIGHTS
        try:
            rqvae, _ = load_rqvae(rqvae_path)
        except RQVAEError as error:
            raise UpdatesUnavailable(
                f"bundle {manifest.bundle_id} cannot give new items IDs: {error}"
            ) from None
        self.allocator = IdAllocator(rqvae, manifest.semantic_ids.scheme)
        if encoder.model != manifest.embedding.model:
            raise BundleMismatch(f"items are embedded with {manifest.embedding.model}, not {encoder.model}")
        self.bundle_dir = bundle_dir
        self.manifest = manifest
        self.base_rows = {str(row["item_id"]): dict(row) for row in base_rows}
        self.base_vectors = base_vectors
        self.live = live
        self.encoder = encoder
        self.engine = engine
        self.max_items = max_items
        self.kinds = field_kinds(base_rows)
        self._lock = threading.Lock()

    @classmethod
    def for_bundle(cls, bundle_dir: Path, engine: Engine, *, max_items: int = 10_000) -> CatalogueUpdater:
        """An updater over a bundle on disk, without its LLM (``semid-service add-items``)."""
        from semantic_ids.dense import bundle_dense_index
        from semantic_ids.text_encoder import encoder_for

        manifest, base_rows, overlay = read_bundle_catalogue(bundle_dir)
        dense = bundle_dense_index(bundle_dir, manifest, base_rows)
        if dense is None:
            raise UpdatesUnavailable(f"bundle {manifest.bundle_id} has no item vectors (dense index)")
        _, live = served_catalogue(manifest, base_rows, dense.vectors, overlay)
        assert live is not None  # it has vectors
        encoder = encoder_for(manifest.embedding.model)
        return cls(bundle_dir, manifest, base_rows, dense.vectors, live, encoder, engine, max_items=max_items)

    def parse(self, raws: Sequence[Any]) -> list[Change]:
        """Every change checked before anything is computed: ``ChangeRejected`` names the first bad one."""
        if not raws:
            raise ChangeRejected("no changes: send one item per line")
        if len(raws) > self.max_items:
            raise ChangeRejected(f"at most {self.max_items} changes at once, got {len(raws)}")
        changes = [parse_change(raw, f"change {number}", self.kinds) for number, raw in enumerate(raws, 1)]
        seen: dict[str, int] = {}
        for number, change in enumerate(changes, 1):
            if change.item_id in seen:
                raise ChangeRejected(
                    f"change {number}: item {echo(change.item_id)} is already changed by change "
                    f"{seen[change.item_id]}; send each item once"
                )
            seen[change.item_id] = number
        return changes

    def apply(
        self,
        changes: Sequence[Change],
        prepare: Callable[[LiveCatalogue], Prepared],
        publish: Callable[[Prepared, LiveCatalogue], None] | None = None,
    ) -> ChangeReport:
        """Apply ``changes`` all or nothing. ``prepare`` builds what serves the new catalogue before
        anything is committed; ``publish`` puts it in service after the commit, still under the lock, so
        change sets are served in the order they were committed."""
        with self._lock:
            started = time.perf_counter()
            live = self.live
            outcomes, rows, vectors, retired = self._plan(live, changes)
            changed = [o for o in outcomes if o.action != "unchanged"]
            counts: dict[str, int] = {action: sum(o.action == action for o in outcomes) for action in ACTIONS}
            if not changed:
                return ChangeReport(outcomes, live.content_hash, len(live.rows), live.version, 0.0, counts)
            new_live = LiveCatalogue(
                rows, vectors, frozenset(retired), live.version + 1, catalogue_hash(rows)
            )
            prepared = prepare(new_live)
            overlay = self._overlay(new_live)
            self._commit(live, new_live, changed, overlay)
            self.live = new_live
            if publish is not None:
                publish(prepared, new_live)
            seconds = time.perf_counter() - started
            logger.info("catalogue change v%d: %s in %.3f s", new_live.version, counts, seconds)
            return ChangeReport(
                outcomes,
                new_live.content_hash,
                len(rows),
                new_live.version,
                round(seconds, 4),
                counts,
                overlay_items=len(overlay.upserts) + len(overlay.deleted),
            )

    def _plan(
        self, live: LiveCatalogue, changes: Sequence[Change]
    ) -> tuple[list[ItemOutcome], list[dict[str, Any]], np.ndarray, set[SemanticId]]:
        row_of = {str(row["item_id"]): index for index, row in enumerate(live.rows)}
        deleting = [c for c in changes if isinstance(c, ItemDelete)]
        missing = [c.item_id for c in deleting if c.item_id not in row_of]
        if missing:
            raise ItemNotFound(f"no item has item_id {echo(missing[0])}", missing=missing)
        upserts = [c for c in changes if isinstance(c, ItemUpsert) and not _same(live.rows, row_of, c)]
        unchanged = [c for c in changes if isinstance(c, ItemUpsert) and _same(live.rows, row_of, c)]
        if len(deleting) >= len(live.rows) and not upserts:
            raise ChangeRejected("these deletes would leave the catalogue empty; keep at least one item")
        taken = set(live.ids) | set(live.retired)
        current = [
            SemanticId.from_codes(live.rows[row_of[c.item_id]]["semantic_id"])
            if c.item_id in row_of
            else None
            for c in upserts
        ]
        new_vectors = (
            self.encoder.encode([render_row(c.row(SemanticId((0,)))) for c in upserts])
            if upserts
            else np.zeros((0, self.manifest.embedding.dimensions), dtype=np.float32)
        )
        allocations = self.allocator.allocate(new_vectors, taken, current)
        rows = [dict(row) for row in live.rows]
        vectors = live.vectors.copy()
        retired = set(live.retired)
        outcomes: list[ItemOutcome] = []
        appended: list[np.ndarray] = []
        for change, now, allocation, vector in zip(upserts, current, allocations, new_vectors, strict=True):
            row = change.row(allocation.semantic_id)
            if now is None:
                rows.append(row)
                appended.append(vector)
                outcomes.append(
                    ItemOutcome(
                        change.item_id, "added", allocation.semantic_id.compact, None, allocation.reason
                    )
                )
                continue
            index = row_of[change.item_id]
            rows[index] = row
            vectors[index] = vector
            if allocation.semantic_id != now:
                retired.add(now)
            outcomes.append(
                ItemOutcome(
                    change.item_id, "updated", allocation.semantic_id.compact, now.compact, allocation.reason
                )
            )
        for same in unchanged:
            compact = SemanticId.from_codes(live.rows[row_of[same.item_id]]["semantic_id"]).compact
            outcomes.append(ItemOutcome(same.item_id, "unchanged", compact, compact, "the same content"))
        gone = {c.item_id for c in deleting}
        for delete in deleting:
            old = SemanticId.from_codes(live.rows[row_of[delete.item_id]]["semantic_id"])
            retired.add(old)
            outcomes.append(ItemOutcome(delete.item_id, "deleted", None, old.compact, "its ID is retired"))
        if appended:
            vectors = np.concatenate([vectors, np.stack(appended)])
        keep = [index for index, row in enumerate(rows) if row["item_id"] not in gone]
        order = {change.item_id: number for number, change in enumerate(changes)}
        outcomes.sort(key=lambda outcome: order[outcome.item_id])
        return outcomes, [rows[index] for index in keep], vectors[keep], retired

    def _commit(
        self, live: LiveCatalogue, new_live: LiveCatalogue, changed: list[ItemOutcome], overlay: Overlay
    ) -> None:
        by_id = {str(row["item_id"]): row for row in new_live.rows}
        upserts = [by_id[o.item_id] for o in changed if o.action in ("added", "updated")]
        deleted = [o.item_id for o in changed if o.action == "deleted"]
        with replacing_overlay(self.bundle_dir, overlay):
            apply_changes(
                self.engine,
                upserts,
                deleted,
                expected_version=live.content_hash,
                version=new_live.content_hash,
                item_count=len(new_live.rows),
                scheme=self.manifest.semantic_ids.scheme,
            )

    def _overlay(self, live: LiveCatalogue) -> Overlay:
        """The whole difference of ``live`` from the base bundle."""
        served = {str(row["item_id"]) for row in live.rows}
        upserts, vectors = [], []
        for index, row in enumerate(live.rows):
            base = self.base_rows.get(str(row["item_id"]))
            if base is None or base != row:
                upserts.append(row)
                vectors.append(live.vectors[index])
        dimensions = self.manifest.embedding.dimensions
        return Overlay(
            version=live.version,
            base_bundle_id=self.manifest.bundle_id,
            base_catalogue_hash=self.manifest.catalogue.content_hash,
            catalogue_hash=live.content_hash,
            item_count=len(live.rows),
            upserts=upserts,
            vectors=np.stack(vectors) if vectors else np.zeros((0, dimensions), dtype=np.float32),
            deleted=sorted(item_id for item_id in self.base_rows if item_id not in served),
            retired=sorted(live.retired),
        )


def read_bundle_catalogue(bundle_dir: Path) -> tuple[Manifest, list[dict[str, Any]], Overlay | None]:
    """A bundle's manifest, its base catalogue (checked against the manifest) and its overlay."""
    manifest = read_manifest(bundle_dir)
    if not (bundle_dir / CATALOGUE).is_file():
        raise BundleMismatch(f"{bundle_dir} has no {CATALOGUE}")
    rows = list(read_catalogue(bundle_dir))
    if len(rows) != manifest.catalogue.item_count or catalogue_hash(rows) != manifest.catalogue.content_hash:
        raise BundleMismatch(
            f"{bundle_dir / CATALOGUE} ({len(rows)} items) does not match its manifest's catalogue "
            f"({manifest.catalogue.item_count} items, hash {manifest.catalogue.content_hash[:12]})"
        )
    return manifest, rows, read_overlay(bundle_dir, manifest)


def served_catalogue(
    manifest: Manifest,
    base_rows: Sequence[dict[str, Any]],
    base_vectors: np.ndarray | None,
    overlay: Overlay | None,
) -> tuple[Sequence[dict[str, Any]], LiveCatalogue | None]:
    """The catalogue the bundle serves (base + overlay) and, when it has item vectors, its live state."""
    if overlay is None:
        rows = base_rows
        vectors = base_vectors
        live_hash, version, retired = manifest.catalogue.content_hash, 0, frozenset[SemanticId]()
    else:
        rows, vectors = overlay.apply(base_rows, base_vectors)
        if catalogue_hash(rows) != overlay.catalogue_hash or len(rows) != overlay.item_count:
            raise BundleMismatch(
                f"bundle {manifest.bundle_id}: its overlay v{overlay.version} does not make the catalogue it "
                f"records ({overlay.item_count} items, hash {overlay.catalogue_hash[:12]})"
            )
        live_hash, version, retired = overlay.catalogue_hash, overlay.version, frozenset(overlay.retired)
    if vectors is None:
        return rows, None
    return rows, LiveCatalogue(rows, vectors, retired, version, live_hash)


def _same(rows: Sequence[dict[str, Any]], row_of: Mapping[str, int], change: ItemUpsert) -> bool:
    if change.item_id not in row_of:
        return False
    row = rows[row_of[change.item_id]]
    return bool(row["title"] == change.title and row.get("fields", {}) == change.fields)


def _item_id(value: Any, where: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or len(value) > ITEM_ID_MAX or "\x00" in value:
        raise ChangeRejected(
            f"{where}: item_id must be a non-empty string of at most {ITEM_ID_MAX} characters"
        )
    return value.strip()


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def _check_field(key: str, value: Any, where: str, known: set[str] | None) -> None:
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ChangeRejected(f"{where}: fields.{key}: numbers must be finite")
    if isinstance(value, list):
        if not all(isinstance(part, _SCALARS) for part in value):
            raise ChangeRejected(f"{where}: fields.{key}: a list holds strings or numbers only")
    elif not isinstance(value, _SCALARS):
        raise ChangeRejected(
            f"{where}: fields.{key}: a field is a string, number, boolean or list of those, "
            f"not a {_kind(value) if _kind(value) != 'dict' else 'JSON object'}"
        )
    if isinstance(value, str) and "\x00" in value:
        raise ChangeRejected(f"{where}: fields.{key}: must not contain NUL characters")
    if known and _kind(value) not in known:
        raise ChangeRejected(
            f"{where}: fields.{key}: the catalogue holds {' or '.join(sorted(known))} values here, "
            f"got a {_kind(value)}"
        )


def compact_bundle(bundle_dir: Path) -> Manifest:
    """Fold a bundle's overlay into a new base bundle, in place and atomically: its catalogue, lexical
    index and dense vectors become base + overlay, the model files are kept as they are, and the
    retired IDs stay retired (an overlay holding only them). The database needs no reload: the catalogue
    it holds is the one the new base serves."""
    from semantic_ids.bundle import DENSE_DIR, LEXICAL_DIR, MANIFEST, atomic_directory, file_sha256
    from semantic_ids.dense import bundle_dense_index
    from semantic_ids.lexical import bundle_lexical_index
    from semantic_ids.overlay import OVERLAYS_DIR

    manifest, base_rows, overlay = read_bundle_catalogue(bundle_dir)
    if overlay is None:
        return manifest
    dense = bundle_dense_index(bundle_dir, manifest, base_rows)
    rows, live = served_catalogue(manifest, base_rows, None if dense is None else dense.vectors, overlay)
    lexical = bundle_lexical_index(bundle_dir, manifest, base_rows).rebuilt(rows, overlay.catalogue_hash)
    bundle_id = f"{manifest.bundle_id}+{overlay.version}"
    skipped = {CATALOGUE, LEXICAL_DIR, DENSE_DIR, OVERLAYS_DIR, MANIFEST}
    with atomic_directory(bundle_dir) as staging:
        for path in bundle_dir.iterdir():
            if path.name not in skipped and not path.name.startswith("."):
                (shutil.copytree if path.is_dir() else shutil.copy2)(path, staging / path.name)
        with (staging / CATALOGUE).open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        catalogue = manifest.catalogue.model_copy(
            update={
                "content_hash": overlay.catalogue_hash,
                "item_count": len(rows),
                "file_sha256": file_sha256(staging / CATALOGUE),
            }
        )
        compacted = manifest.model_copy(update={"bundle_id": bundle_id, "catalogue": catalogue})
        lexical.save(staging / LEXICAL_DIR)
        if live is not None and dense is not None:
            live.dense_index(dense.model).save(staging / DENSE_DIR)
        (staging / MANIFEST).write_text(compacted.model_dump_json(indent=2) + "\n")
        if overlay.retired:
            retired_only = Overlay(
                version=overlay.version,
                base_bundle_id=compacted.bundle_id,
                base_catalogue_hash=overlay.catalogue_hash,
                catalogue_hash=overlay.catalogue_hash,
                item_count=len(rows),
                upserts=[],
                vectors=np.zeros((0, manifest.embedding.dimensions), dtype=np.float32),
                deleted=[],
                retired=overlay.retired,
            )
            with replacing_overlay(staging, retired_only):
                pass
    logger.info(
        "compacted bundle %s: %d items, overlay v%d folded in",
        compacted.bundle_id,
        len(rows),
        overlay.version,
    )
    return compacted
