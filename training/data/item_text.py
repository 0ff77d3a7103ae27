"""The natural-language text of a training item: the shared rendering (``semantic_ids.item_text``)."""

from __future__ import annotations

from semantic_ids.item_text import MAX_CHARS, render_flat_item
from training.data.items import CatalogueItem

__all__ = ["MAX_CHARS", "render_item_text"]


def render_item_text(item: CatalogueItem) -> str:
    """Concise text for an item, from its title and fields."""
    return render_flat_item(item.to_flat())
