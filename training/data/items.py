"""The catalogue item, one shape throughout training: id, title, other fields, and its semantic ID.

On disk a run keeps two forms: ``catalogue.jsonl`` is flat (``{"item_id", "title", ...fields}``, the
import format) and ``items_with_ids.jsonl`` nests the fields (``{"item_id", "title", "fields",
"semantic_id"}``, the bundle's catalogue format). ``from_dict`` reads either; ``to_flat`` and
``to_dict`` write them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from semantic_ids.ids import SemanticId

_OWN_KEYS = ("item_id", "title", "fields", "semantic_id")


@dataclass(frozen=True)
class CatalogueItem:
    item_id: str
    title: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    semantic_id: SemanticId | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CatalogueItem:
        """A flat catalogue record or an ``items_with_ids`` row (fields nested, semantic_id a code list)."""
        nested = raw.get("fields")
        own = _OWN_KEYS if isinstance(nested, Mapping) else ("item_id", "title", "semantic_id")
        flat = {key: value for key, value in raw.items() if key not in own}
        fields = {**nested, **flat} if isinstance(nested, Mapping) else flat
        codes = raw.get("semantic_id")
        return cls(
            item_id=str(raw["item_id"]),
            title=str(raw["title"]),
            fields=fields,
            semantic_id=None if codes is None else SemanticId.from_codes(codes),
        )

    @property
    def sid(self) -> SemanticId:
        """The item's semantic ID; ``ValueError`` before IDs are assigned."""
        if self.semantic_id is None:
            raise ValueError(f"item {self.item_id!r} has no semantic ID yet")
        return self.semantic_id

    def with_id(self, semantic_id: SemanticId) -> CatalogueItem:
        return replace(self, semantic_id=semantic_id)

    def to_flat(self) -> dict[str, Any]:
        """The import form: id and title, then every field at the top level."""
        return {"item_id": self.item_id, "title": self.title, **self.fields}

    def to_dict(self) -> dict[str, Any]:
        """The ``items_with_ids`` / bundle form: fields nested, the semantic ID as a code list."""
        row: dict[str, Any] = {"item_id": self.item_id, "title": self.title, "fields": dict(self.fields)}
        if self.semantic_id is not None:
            row["semantic_id"] = list(self.semantic_id.codes)
        return row


def items_from_dicts(rows: Iterable[Mapping[str, Any]]) -> list[CatalogueItem]:
    return [CatalogueItem.from_dict(row) for row in rows]
