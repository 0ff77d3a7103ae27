"""A 20-film catalogue with semantic IDs, for fast tests of examples, fine-tuning, evaluation and bundles."""

from __future__ import annotations

from typing import Any

from semantic_ids.ids import IdScheme, SemanticId
from training.data.items import CatalogueItem, items_from_dicts

TINY_SCHEME = IdScheme((4, 4, 3))  # two RQ levels, then the disambiguation level
TINY_ID_REPORT: dict[str, Any] = {"rq_levels": 2, "codebook_sizes": [4, 4, 3], "collision_rate": 0.25}

_TITLES = [
    "Alien", "Heat", "Fargo", "Ran", "Big", "Jaws", "Up", "Rocky", "Klute", "Tron",
    "Babe", "Juno", "Milk", "Hugo", "Argo", "Rush", "Her", "Elf", "Coco", "Cars",
]  # fmt: skip
_DIRECTORS = ["Ridley Scott", "Michael Mann", "Joel Coen", "Akira Kurosawa", "Penny Marshall"]
_GENRES = [["Sci-Fi", "Horror"], ["Crime", "Drama"], ["Comedy"], ["Animation", "Family"], ["Romance"]]
_COUNTRIES = ["USA", "UK", "France", "Japan"]
_CAST = ["Tom Hanks", "Sigourney Weaver", "Al Pacino", "Frances McDormand", "Ryan Gosling", "Emma Stone"]


def tiny_items() -> list[dict[str, Any]]:
    """items_with_ids rows; IDs are unique and share prefixes the way RQ-VAE codes do."""
    items = []
    for index, title in enumerate(_TITLES):
        group = index % 5
        items.append(
            {
                "item_id": f"tt{index:07d}",
                "title": title,
                "fields": {
                    "year": 1975 + 2 * index,
                    "director": _DIRECTORS[group],
                    "genres": _GENRES[group],
                    "cast": [_CAST[index % 6], _CAST[(index + 2) % 6]],
                    "country": _COUNTRIES[index % 4],
                    "language": "English" if index % 4 != 3 else "Japanese",
                    "mpaa_rating": ["PG", "R", "PG-13"][index % 3],
                },
                "semantic_id": [group % 4, (index // 5) % 4, index // 20 + (group // 4)],
            }
        )
    return items


def tiny_catalogue() -> list[CatalogueItem]:
    """``tiny_items`` as the training side's typed items."""
    return items_from_dicts(tiny_items())


TINY_IDS = [SemanticId.from_codes(item["semantic_id"]) for item in tiny_items()]  # the 20 items' IDs
