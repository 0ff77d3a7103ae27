"""Seeded fine-tuning examples: free-text query -> semantic ID, plus semantic ID -> attribute.

Queries are built from an item's own fields through named phrasing templates: the title alone or
with a year, and director, year or decade, genre, cast, country, language and MPAA rating in
combinations, short and long. Slot values vary too (genre synonyms, decades as "nineties", "90s",
"1990s"), and some queries are lowercased or get one light typo. Whole templates are held out for
validation, so validation measures generalisation to wording the model never saw.

Relevance: the target is the item the query was generated from, and evaluation counts that source
item as the relevant one. Many attribute queries ("a nineties drama by Woody Allen") fit several
items; each validation example also lists ``matching_item_ids``, every item whose fields satisfy all
the query's attribute constraints (capped), for a second, lenient "any matching item" metric.

Cast names are drawn from the first six cast entries, the ones ``render_item_text`` shows to the
dense and BM25 baselines, so all three systems are asked about facts they could all see.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from semantic_ids.decoding import build_prompt
from semantic_ids.ids import SEM_END
from training.data.items import CatalogueItem
from training.llm.phrasing import TEMPLATES, MissingField, Slots, Template, add_noise, first_part

MATCH_CAP = 200


@dataclass(frozen=True)
class ExampleConfig:
    seed: int = 0
    train_queries_per_item: int = 12
    valid_queries_per_item: int = 1
    attribute_examples_per_item: int = 2
    index_examples_per_item: int = 0  # the item's own profile text -> its ID (DSI-style "indexing")
    lowercase_rate: float = 0.3
    typo_rate: float = 0.1


def _query_examples(
    item: CatalogueItem, pool: Sequence[Template], count: int, rng: random.Random, config: ExampleConfig
) -> list[tuple[Template, str, dict[str, Any]]]:
    """Up to ``count`` distinct queries, templates drawn by weight (so titles come up most often)."""
    out: list[tuple[Template, str, dict[str, Any]]] = []
    usable, seen = list(pool), set()
    for _ in range(count * 4):  # bounded: an item with few fields cannot fill ``count`` distinct queries
        if len(out) >= count or not usable:
            break
        template = rng.choices(usable, weights=[t.weight for t in usable])[0]
        slots = Slots(item, rng)
        try:
            text = add_noise(template.render(slots), rng, config.lowercase_rate, config.typo_rate)
        except MissingField:
            usable.remove(template)
            continue
        if text.lower() not in seen:
            seen.add(text.lower())
            out.append((template, text, slots.constraints))
    return out


def example_target(item: CatalogueItem) -> str:
    return "".join(item.sid.code_tokens()) + SEM_END


_ATTRIBUTES = ("title", "director", "year", "genres")


def index_text(item: CatalogueItem) -> str:
    """A compact profile of the item: every fact the query templates ask about, in one line."""
    fields = item.fields
    parts = [f"{item.title}" + (f" ({fields['year']})" if "year" in fields else "")]
    if fields.get("genres"):
        parts.append(", ".join(fields["genres"][:3]))
    if "director" in fields:
        parts.append(f"directed by {first_part(fields['director'])}")
    if fields.get("cast"):
        parts.append("starring " + ", ".join(list(fields["cast"])[:3]))
    origin = [first_part(fields[key]) for key in ("country", "language") if key in fields]
    if origin:
        parts.append(" ".join(origin))
    return ". ".join(parts)


def attribute_example(item: CatalogueItem, attribute: str) -> tuple[str, str] | None:
    """(prompt, answer): "<ID tokens> director:" -> " Sam Mendes"; None when the item lacks it."""
    value = item.title if attribute == "title" else item.fields.get(attribute)
    if value in (None, "", []):
        return None
    answer = ", ".join(value[:3]) if isinstance(value, list) else str(value)
    return f"{item.sid.tokens} {attribute}:", f" {answer}"


class _MatchIndex:
    """Which items satisfy a query's constraints (inverted index per constraint kind)."""

    def __init__(self, items: Sequence[CatalogueItem]) -> None:
        self.index: dict[tuple[str, Any], set[str]] = defaultdict(set)
        for item in items:
            item_id, fields = item.item_id, item.fields
            keys: list[tuple[str, Any]] = [("title", item.title.lower())]
            if "director" in fields:
                keys.append(("director", first_part(fields["director"])))
            if "year" in fields:
                keys += [("year", int(fields["year"])), ("decade", int(fields["year"]) // 10 * 10)]
            keys += [("genres", g) for g in fields.get("genres", [])]
            keys += [("cast", c) for c in list(fields.get("cast", []))]
            keys += [("country", c.strip()) for c in str(fields.get("country", "")).split(",") if c.strip()]
            if "language" in fields:
                keys.append(("language", first_part(fields["language"])))
            if "mpaa_rating" in fields:
                keys.append(("mpaa_rating", str(fields["mpaa_rating"])))
            for key in keys:
                self.index[key].add(item_id)

    def matching(self, constraints: Mapping[str, Any]) -> list[str]:
        sets = []
        for kind, value in constraints.items():
            values = value if isinstance(value, list) else [value]
            for one in values:
                sets.append(self.index.get((kind, one.lower() if kind == "title" else one), set()))
        return sorted(set.intersection(*sets))[:MATCH_CAP] if sets else []


def query_example(split: str, template: str, item_id: str, query: str, target: str) -> dict[str, Any]:
    return {
        "split": split,
        "kind": "query",
        "template": template,
        "item_id": item_id,
        "query": query,
        "prompt": build_prompt(query),
        "target": target,
    }


def _attribute_examples(item: CatalogueItem, rng: random.Random, count: int) -> list[dict[str, Any]]:
    examples = []
    for attribute in rng.sample(_ATTRIBUTES, k=min(count, len(_ATTRIBUTES))):
        pair = attribute_example(item, attribute)
        if pair is not None:
            examples.append(
                {
                    "split": "train",
                    "kind": "attribute",
                    "template": f"attr_{attribute}",
                    "item_id": item.item_id,
                    "prompt": pair[0],
                    "target": pair[1],
                }
            )
    return examples


def build_examples(items: Sequence[CatalogueItem], config: ExampleConfig) -> list[dict[str, Any]]:
    """All examples for ``items`` (with their semantic IDs), deterministic for a given config."""
    rng = random.Random(config.seed)
    train_pool = [t for t in TEMPLATES if not t.held_out]
    valid_pool = [t for t in TEMPLATES if t.held_out]
    matcher = _MatchIndex(items)
    examples: list[dict[str, Any]] = []
    for item in items:
        target, item_id = example_target(item), item.item_id
        for split, pool, count in (
            ("train", train_pool, config.train_queries_per_item),
            ("valid", valid_pool, config.valid_queries_per_item),
        ):
            for template, query, constraints in _query_examples(item, pool, count, rng, config):
                example = query_example(split, template.name, item_id, query, target)
                if split == "valid":
                    example["matching_item_ids"] = matcher.matching(constraints) or [item_id]
                examples.append(example)
        for _ in range(config.index_examples_per_item):
            examples.append(query_example("train", "index", item_id, index_text(item), target))
        examples.extend(_attribute_examples(item, rng, config.attribute_examples_per_item))
    rng.shuffle(examples)
    return examples
