"""Small catalogues in the bundle's ``catalogue.jsonl`` row format, for the database tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from semantic_ids.bundle import (
    CATALOGUE,
    MANIFEST,
    SCHEMA_VERSION,
    BaseModelInfo,
    CatalogueInfo,
    EmbeddingInfo,
    Manifest,
    SemanticIdInfo,
    TokenInfo,
    catalogue_hash,
)
from semantic_ids.ids import REC, SEM_END, SEM_START

SAMPLE_CODEBOOK_SIZES = (8, 8, 2)


def make_items(count: int = 6) -> list[dict[str, Any]]:
    """``count`` items with unique 3-level IDs ([i % 4, i // 4, i % 2]); some share prefixes."""
    return [
        {
            "item_id": f"tt{index:07d}",
            "title": f"Film {index}",
            "fields": {"year": 1990 + index, "genres": ["Drama", "Sci-Fi"][: 1 + index % 2], "rating": 7.5},
            "semantic_id": [index % 4, index // 4, index % 2],
        }
        for index in range(count)
    ]


def write_catalogue_bundle(bundle_dir: Path, items: list[dict[str, Any]]) -> Manifest:
    """The manifest and catalogue.jsonl of a bundle (all that ``load-catalogue`` reads)."""
    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
        bundle_id="sample-bundle",
        created_at=datetime.now(UTC),
        catalogue=CatalogueInfo(content_hash=catalogue_hash(items), item_count=len(items), profile="sample"),
        embedding=EmbeddingInfo(model="none", dimensions=8),
        semantic_ids=SemanticIdInfo(rq_levels=2, codebook_sizes=SAMPLE_CODEBOOK_SIZES, collision_rate=0.0),
        base_model=BaseModelInfo(name="none", source="tests", weights_sha256="0" * 64),
        tokens=TokenInfo(sem_start=SEM_START, sem_end=SEM_END, rec=REC, added_count=21),
        lora={},
        training={},
        evaluation={},
    )
    bundle_dir.mkdir(parents=True, exist_ok=True)
    (bundle_dir / MANIFEST).write_text(manifest.model_dump_json(indent=2))
    with (bundle_dir / CATALOGUE).open("w", encoding="utf-8") as handle:
        for item in items:
            handle.write(json.dumps(item, ensure_ascii=False) + "\n")
    return manifest
