"""The catalogue overlay: the items added, changed and deleted since a bundle was trained, kept beside
it so that a restart serves the same catalogue without retraining.

On disk, inside the bundle folder::

    overlays/current.json        {"version": N}: the overlay in force (absent: none)
    overlays/v000N/overlay.json  what it holds, the base it applies to, its content hash
    overlays/v000N/items.jsonl   the added and changed items, final state (bundle catalogue rows)
    overlays/v000N/vectors.npy   their embeddings (float32, rows as items.jsonl; no pickle)

An overlay is the whole difference from the base, not a log: each change writes a new version folder,
then replaces ``current.json`` (one atomic rename), so a reader or a crash sees the old overlay or the
new one, never half of one. The IDs of deleted or moved items are kept (``retired``) and never given
again. ``semid-service compact`` folds an overlay into a new base bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from semantic_ids.bundle import BundleMismatch, Manifest
from semantic_ids.ids import SemanticId

OVERLAYS_DIR = "overlays"
CURRENT = "current.json"
META = "overlay.json"
ITEMS = "items.jsonl"
VECTORS = "vectors.npy"
FORMAT = "overlay/1"


@dataclass(frozen=True)
class Overlay:
    version: int
    base_bundle_id: str
    base_catalogue_hash: str
    catalogue_hash: str  # of the catalogue it makes (base + overlay): what the database must hold
    item_count: int
    upserts: list[dict[str, Any]]  # bundle catalogue rows: item_id, title, fields, semantic_id
    vectors: np.ndarray  # (upserts, dimensions) float32
    deleted: list[str]  # base item ids no longer served
    retired: list[SemanticId]  # IDs once served and never given again
    updated_at: str = ""

    def content_hash(self) -> str:
        digest = hashlib.sha256()
        for row in self.upserts:
            digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode() + b"\n")
        digest.update(np.ascontiguousarray(self.vectors, dtype=np.float32).tobytes())
        digest.update(json.dumps([self.deleted, [sid.compact for sid in self.retired]]).encode())
        return digest.hexdigest()

    def apply(
        self, base_rows: Sequence[Mapping[str, Any]], base_vectors: np.ndarray | None
    ) -> tuple[list[dict[str, Any]], np.ndarray | None]:
        """The served catalogue: base rows in order (changed ones replaced, deleted ones gone), then the
        added items in overlay order; and their vectors when the base has vectors."""
        upsert_row = {str(row["item_id"]): index for index, row in enumerate(self.upserts)}
        deleted = set(self.deleted)
        rows: list[dict[str, Any]] = []
        sources: list[tuple[bool, int]] = []  # (from the overlay, row there)
        for index, row in enumerate(base_rows):
            item_id = str(row["item_id"])
            if item_id in deleted:
                continue
            if item_id in upsert_row:
                changed = upsert_row.pop(item_id)
                rows.append(self.upserts[changed])
                sources.append((True, changed))
            else:
                rows.append(dict(row))
                sources.append((False, index))
        for index in upsert_row.values():  # dicts keep insertion order: overlay order
            rows.append(self.upserts[index])
            sources.append((True, index))
        if base_vectors is None:
            return rows, None
        vectors = np.zeros((len(rows), base_vectors.shape[1]), dtype=np.float32)
        for position, (new, source) in enumerate(sources):
            vectors[position] = self.vectors[source] if new else base_vectors[source]
        return rows, vectors


def read_overlay(bundle_dir: Path, manifest: Manifest) -> Overlay | None:
    """The overlay in force, checked against the bundle and its own hash; None when there is none."""
    pointer = bundle_dir / OVERLAYS_DIR / CURRENT
    if not pointer.is_file():
        return None
    version = int(json.loads(pointer.read_text())["version"])
    folder = _version_dir(bundle_dir, version)
    try:
        meta = json.loads((folder / META).read_text())
        with (folder / ITEMS).open(encoding="utf-8") as handle:
            upserts = [json.loads(line) for line in handle if line.strip()]
        vectors = np.load(folder / VECTORS, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise BundleMismatch(
            f"bundle {manifest.bundle_id}: overlay v{version} is unreadable: {error}"
        ) from error
    if meta.get("format") != FORMAT:
        raise BundleMismatch(f"overlay {folder} has format {meta.get('format')!r}; expected {FORMAT}")
    if (meta["base_bundle_id"], meta["base_catalogue_hash"]) != (
        manifest.bundle_id,
        manifest.catalogue.content_hash,
    ):
        raise BundleMismatch(
            f"overlay {folder} applies to bundle {meta['base_bundle_id']}, not {manifest.bundle_id}"
        )
    overlay = Overlay(
        version=version,
        base_bundle_id=meta["base_bundle_id"],
        base_catalogue_hash=meta["base_catalogue_hash"],
        catalogue_hash=meta["catalogue_hash"],
        item_count=int(meta["item_count"]),
        upserts=upserts,
        vectors=vectors,
        deleted=[str(item_id) for item_id in meta["deleted"]],
        retired=[SemanticId.parse(compact) for compact in meta["retired"]],
        updated_at=str(meta.get("updated_at", "")),
    )
    if overlay.content_hash() != meta["content_hash"] or len(vectors) != len(upserts):
        raise BundleMismatch(f"overlay {folder} does not match its content hash: it was changed by hand")
    return overlay


@contextmanager
def replacing_overlay(bundle_dir: Path, overlay: Overlay) -> Iterator[None]:
    """Write ``overlay`` as a new version and put it in force; put the previous one back should the block
    raise (the caller's database transaction commits inside it). Older versions are removed after."""
    root = bundle_dir / OVERLAYS_DIR
    folder = _version_dir(bundle_dir, overlay.version)
    staging = root / f".v{overlay.version:06d}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    pointer = root / CURRENT
    previous = pointer.read_text() if pointer.is_file() else None
    try:
        _write_version(staging, overlay)
        shutil.rmtree(folder, ignore_errors=True)  # a version a failed run left behind
        staging.rename(folder)
        _replace_text(pointer, json.dumps({"version": overlay.version}) + "\n")
        yield
    except BaseException:
        if previous is None:
            pointer.unlink(missing_ok=True)
        else:
            _replace_text(pointer, previous)
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    for old in root.glob("v*"):
        if old.name != folder.name:
            shutil.rmtree(old, ignore_errors=True)


def overlay_bytes(bundle_dir: Path) -> int:
    """Bytes on disk of the overlay in force (0: none)."""
    pointer = bundle_dir / OVERLAYS_DIR / CURRENT
    if not pointer.is_file():
        return 0
    folder = _version_dir(bundle_dir, int(json.loads(pointer.read_text())["version"]))
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file())


def _write_version(folder: Path, overlay: Overlay) -> None:
    with (folder / ITEMS).open("w", encoding="utf-8") as handle:
        for row in overlay.upserts:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    np.save(folder / VECTORS, np.ascontiguousarray(overlay.vectors, dtype=np.float32), allow_pickle=False)
    meta = {
        "format": FORMAT,
        "version": overlay.version,
        "base_bundle_id": overlay.base_bundle_id,
        "base_catalogue_hash": overlay.base_catalogue_hash,
        "catalogue_hash": overlay.catalogue_hash,
        "item_count": overlay.item_count,
        "upserts": len(overlay.upserts),
        "deleted": overlay.deleted,
        "retired": [sid.compact for sid in overlay.retired],
        "content_hash": overlay.content_hash(),
        "updated_at": overlay.updated_at or datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (folder / META).write_text(json.dumps(meta, indent=1) + "\n")


def _version_dir(bundle_dir: Path, version: int) -> Path:
    return bundle_dir / OVERLAYS_DIR / f"v{version:06d}"


def _replace_text(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    partial.write_text(text)
    os.replace(partial, path)
