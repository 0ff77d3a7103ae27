"""The natural-language text of an item, as read by the embedding model, BM25 and the lexical retriever.

It lives in the shared contract because both halves index it: training embeds it and builds the
bundle's BM25 index from it; the service rebuilds that index from ``catalogue.jsonl`` for a bundle
written before bundles carried one, and must get the very same text.

Films get a fixed sentence layout ("Heat (1995). Crime, Drama film directed by Michael Mann, starring
..."), other catalogues a "key: value" list of their short fields. What goes in is what a query would
mention (genre, people, era, place); figures such as box office or review counts are left out because
they add tokens without adding meaning to a sentence embedding. The text stays well inside MiniLM's
256-token window (about 1,000 characters of English).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_CHARS = 900
# movies.db has no billing order (the import puts the actors of most films first,
# training.data.catalogue), so a few more names than "the top 3" are shown.
_CAST_SHOWN = 6
_CONSENSUS_CHARS = 240
_FIELD_CHARS = 120

# Fields the film layout renders itself, or deliberately leaves out (figures, long award strings).
_FILM_FIELDS = {
    "item_id", "title", "year", "genres", "director", "writer", "cast", "country", "language",
    "mpaa_rating", "consensus", "runtime_minutes", "production", "awards", "oscars_won",
    "tomato_meter", "tomato_reviews", "box_office",
}  # fmt: skip


def _names(value: Any, limit: int | None = None) -> str:
    if isinstance(value, list):
        parts = [str(part) for part in value if str(part).strip()]
        return ", ".join(parts[:limit])
    return str(value)


def _snippet(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def _film_sentences(item: dict[str, Any]) -> list[str]:
    year = f" ({item['year']})" if "year" in item else ""
    sentences = [f"{item['title']}{year}."]
    kind = f"{_names(item['genres'])} film" if item.get("genres") else "Film"
    described = [kind]
    if "director" in item:
        described.append(f"directed by {item['director']}")
    if item.get("cast"):
        described.append(f"starring {_names(item['cast'], _CAST_SHOWN)}")
    sentences.append(", ".join(described) + ".")
    origin = [item[key] for key in ("country", "language") if key in item]
    if origin:
        sentences.append(f"From {origin[0]}" + (f", in {origin[1]}." if len(origin) > 1 else "."))
    if "mpaa_rating" in item:
        sentences.append(f"Rated {item['mpaa_rating']}.")
    if item.get("oscars_won"):
        sentences.append(f"Won {item['oscars_won']} Oscar{'s' if item['oscars_won'] != 1 else ''}.")
    if "consensus" in item:
        sentences.append(_snippet(str(item["consensus"]), _CONSENSUS_CHARS))
    return sentences


def _other_fields(item: dict[str, Any]) -> list[str]:
    parts = []
    for key, value in item.items():
        if key in _FILM_FIELDS or isinstance(value, dict):
            continue
        parts.append(f"{key.replace('_', ' ')}: {_snippet(_names(value), _FIELD_CHARS)}.")
    return parts


def render_flat_item(flat: Mapping[str, Any]) -> str:
    """Concise text for an item in the flat form (``item_id``, ``title``, then every field)."""
    text = " ".join(_film_sentences(dict(flat)) + _other_fields(dict(flat)))
    return _snippet(text, MAX_CHARS)


def render_row(row: Mapping[str, Any]) -> str:
    """The text of a bundle catalogue row (``{"item_id", "title", "fields", "semantic_id"}``)."""
    return render_flat_item({"item_id": row["item_id"], "title": row["title"], **row.get("fields", {})})
