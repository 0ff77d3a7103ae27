"""The overlay beside a bundle: applied in order, checked against its hash, replaced atomically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from semantic_ids.bundle import BundleMismatch, Manifest
from semantic_ids.ids import SemanticId
from semantic_ids.overlay import OVERLAYS_DIR, Overlay, read_overlay, replacing_overlay
from tests.helpers.tiny_bundle import TinyBundle

BASE = [{"item_id": f"i{n}", "title": f"T{n}", "fields": {}, "semantic_id": [n, 0]} for n in range(4)]


def overlay(manifest: Manifest, version: int = 1) -> Overlay:
    changed = {**BASE[1], "title": "T1 changed"}
    added = {"item_id": "new", "title": "New", "fields": {}, "semantic_id": [9, 0]}
    return Overlay(
        version=version,
        base_bundle_id=manifest.bundle_id,
        base_catalogue_hash=manifest.catalogue.content_hash,
        catalogue_hash="h",
        item_count=4,
        upserts=[added, changed],
        vectors=np.asarray([[9.0, 9.0], [1.5, 1.5]], dtype=np.float32),
        deleted=["i2"],
        retired=[SemanticId((2, 0))],
    )


@pytest.fixture
def manifest(tiny_bundle: TinyBundle) -> Manifest:
    return tiny_bundle.manifest


@pytest.fixture
def tiny_bundle(tmp_path: Path) -> TinyBundle:
    from tests.helpers.tiny_bundle import make_tiny_bundle

    return make_tiny_bundle(tmp_path, steps=1)


def test_apply_replaces_in_place_drops_deleted_and_appends_new(manifest: Manifest) -> None:
    base_vectors = np.asarray([[float(n)] * 2 for n in range(4)], dtype=np.float32)
    rows, vectors = overlay(manifest).apply(BASE, base_vectors)
    assert [row["item_id"] for row in rows] == ["i0", "i1", "i3", "new"]
    assert rows[1]["title"] == "T1 changed"
    assert vectors is not None and vectors[:, 0].tolist() == [0.0, 1.5, 3.0, 9.0]


def test_an_overlay_round_trips_and_a_tampered_one_is_refused(
    tiny_bundle: TinyBundle, manifest: Manifest
) -> None:
    with replacing_overlay(tiny_bundle.bundle_dir, overlay(manifest)):
        pass
    read = read_overlay(tiny_bundle.bundle_dir, manifest)
    assert (
        read is not None
        and read.version == 1
        and read.deleted == ["i2"]
        and read.retired == [SemanticId((2, 0))]
    )
    items = tiny_bundle.bundle_dir / OVERLAYS_DIR / "v000001" / "items.jsonl"
    items.write_text(items.read_text().replace("New", "Edited by hand"))
    with pytest.raises(BundleMismatch, match="content hash"):
        read_overlay(tiny_bundle.bundle_dir, manifest)


def test_a_failure_inside_puts_the_previous_overlay_back(tiny_bundle: TinyBundle, manifest: Manifest) -> None:
    with replacing_overlay(tiny_bundle.bundle_dir, overlay(manifest, 1)):
        pass
    with (
        pytest.raises(RuntimeError, match="database"),
        replacing_overlay(tiny_bundle.bundle_dir, overlay(manifest, 2)),
    ):
        assert read_overlay(tiny_bundle.bundle_dir, manifest).version == 2  # type: ignore[union-attr]
        raise RuntimeError("the database refused")
    assert read_overlay(tiny_bundle.bundle_dir, manifest).version == 1  # type: ignore[union-attr]
    assert sorted(p.name for p in (tiny_bundle.bundle_dir / OVERLAYS_DIR).iterdir()) == [
        "current.json",
        "v000001",
    ]
    pointer = json.loads((tiny_bundle.bundle_dir / OVERLAYS_DIR / "current.json").read_text())
    assert pointer == {"version": 1}


def test_an_overlay_of_another_bundle_is_refused(tiny_bundle: TinyBundle, manifest: Manifest) -> None:
    foreign = Overlay(**{**overlay(manifest).__dict__, "base_bundle_id": "someone-else"})
    with replacing_overlay(tiny_bundle.bundle_dir, foreign):
        pass
    with pytest.raises(BundleMismatch, match="applies to bundle someone-else"):
        read_overlay(tiny_bundle.bundle_dir, manifest)
