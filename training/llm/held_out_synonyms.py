"""Queries that name a category in words training never used (a field's ``held_out_synonyms``).

The training queries and the held-out templates both spell a category with the configuration's own
synonyms, which the model learns; a user asks in words of their own ("something terrifying"). These
queries stand in for those: each names one value by a held-out synonym, and every item with that value
is relevant. ``bench.tune_fusion`` tunes on them, so the fusion weighs the dense source by what it adds
where a query matches nothing the model or BM25 has seen.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from training.llm.template_spec import QueryTemplates, field_values

QUERIES_PER_SYNONYM = 2  # each with another opener


def synonym_queries(
    templates: QueryTemplates, rows: Sequence[Mapping[str, Any]], seed: int
) -> list[tuple[str, tuple[int, ...]]]:
    """(query, relevant catalogue rows) for every held-out synonym of a value some row has.

    ``rows`` are catalogue rows in bundle order (``fields`` holds the catalogue fields)."""
    rng = random.Random(seed)
    openers = [opener for opener in templates.queries.openers if opener.strip()] or [""]
    out: list[tuple[str, tuple[int, ...]]] = []
    for field in templates.fields.values():
        for value, words in sorted((field.held_out_synonyms or {}).items()):
            relevant = tuple(
                row
                for row, item in enumerate(rows)
                if value in field_values(field, dict(item.get("fields") or {}).get(field.key))
            )
            if not relevant:
                continue
            for word in words:
                for opener in rng.sample(openers, min(QUERIES_PER_SYNONYM, len(openers))):
                    out.append((f"{opener}{word}", relevant))
    return out
