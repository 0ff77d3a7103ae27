"""Seeded fine-tuning examples: free-text query -> semantic ID, plus semantic ID -> attribute.

Queries are built from an item's own fields through the named templates of the catalogue's query
configuration (for films: the title alone or with a year, and director, year or decade, genre, cast,
country, language and MPAA rating in combinations, short and long). Slot values vary too (genre
synonyms, decades as "nineties", "90s", "1990s"), and some queries are lowercased or get one light
typo. Whole templates are held out for validation, so validation measures generalisation to wording
the model never saw.

Relevance: the target is the item the query was generated from, and evaluation counts that source
item as the relevant one. Many attribute queries ("a nineties drama by Woody Allen") fit several
items; each validation example also lists ``matching_item_ids``, every item whose fields satisfy all
the query's attribute constraints (capped), for a second, lenient "any matching item" metric.
"""

from __future__ import annotations

import heapq
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from semantic_ids.decoding import build_prompt
from semantic_ids.ids import SEM_END
from training.data.items import CatalogueItem
from training.llm.phrasing import MissingField, Slots, add_noise, render
from training.llm.template_files import films_templates
from training.llm.template_spec import (
    FieldSpec,
    QueryTemplates,
    Template,
    field_values,
    placeholders,
    whole_value,
    year_of,
)

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
    item: CatalogueItem,
    pool: Sequence[Template],
    count: int,
    rng: random.Random,
    config: ExampleConfig,
    templates: QueryTemplates,
) -> list[tuple[Template, str, dict[str, list[Any]]]]:
    """Up to ``count`` distinct queries, templates drawn by weight (so titles come up most often)."""
    out: list[tuple[Template, str, dict[str, list[Any]]]] = []
    usable, seen = list(pool), set()
    for _ in range(count * 4):  # bounded: an item with few fields cannot fill ``count`` distinct queries
        if len(out) >= count or not usable:
            break
        template = rng.choices(usable, weights=[t.weight for t in usable])[0]
        slots = Slots(item, rng, templates)
        try:
            text = add_noise(render(template, slots), rng, config.lowercase_rate, config.typo_rate)
        except MissingField:
            usable.remove(template)
            continue
        if text.lower() not in seen:
            seen.add(text.lower())
            out.append((template, text, slots.constraints))
    return out


def example_target(item: CatalogueItem) -> str:
    return "".join(item.sid.code_tokens()) + SEM_END


def _index_value(field: FieldSpec, item: CatalogueItem) -> str | None:
    """A slot's value in the index text: a list's first three entries, a split field's first part."""
    if field.kind == "title":
        return item.title
    raw = item.fields.get(field.key)
    if field.kind == "decade":
        year = year_of(raw)
        return None if year is None else f"{year // 10 * 10}s"
    values = field_values(field, raw)
    if not values:
        return None
    return ", ".join(values[:3]) if isinstance(raw, list) else values[0]


def index_text(item: CatalogueItem, templates: QueryTemplates | None = None) -> str:
    """A compact profile of the item: the facts the query templates ask about, in one line."""
    templates = templates or films_templates()
    parts = []
    for alternatives in templates.examples.index_text:
        for text in alternatives:
            values = {n: _index_value(templates.fields[n], item) for n in placeholders(text)}
            if all(value is not None for value in values.values()):
                parts.append(text.format(**values))
                break
    return ". ".join(parts)


def attribute_example(item: CatalogueItem, attribute: str) -> tuple[str, str] | None:
    """(prompt, answer): "<ID tokens> director:" -> " Sam Mendes"; None when the item lacks it."""
    value = item.title if attribute == "title" else item.fields.get(attribute)
    if value in (None, "", []):
        return None
    answer = ", ".join(value[:3]) if isinstance(value, list) else str(value)
    return f"{item.sid.tokens} {attribute}:", f" {answer}"


class MatchIndex:
    """Which items satisfy a query's constraints (inverted index per slot). The examples file's
    constraints hold the values its slots pick (a director's first name listed, say); ``every_value``
    indexes every listed value, for the generated queries, which name any of them."""

    def __init__(
        self, items: Sequence[CatalogueItem], templates: QueryTemplates, *, every_value: bool = False
    ) -> None:
        self.index: dict[tuple[str, Any], set[str]] = defaultdict(set)
        self.title = templates.title_slot  # titles match whatever their case
        self._found: dict[tuple[tuple[str, Any], ...], list[str]] = {}
        for item in items:
            for name, field in templates.fields.items():
                for value in _match_keys(item, name, field, templates, every_value):
                    self.index[(name, value)].add(item.item_id)

    def matching(self, constraints: Mapping[str, list[Any]]) -> list[str]:
        """The first ``MATCH_CAP`` item ids (in order) that meet every constraint.

        Walks the smallest of the constraints' sets, and remembers each combination: a broad constraint
        (one genre) holds half a large catalogue, and intersecting it anew for every query made the
        examples of 10^5 items take 4 minutes instead of 3 s for 10^4 (bench/RESULTS.md, Scale)."""
        keys = tuple(
            (name, value.lower() if name == self.title else value)
            for name, values in constraints.items()
            for value in values
        )
        if not keys:
            return []
        if keys not in self._found:
            sets = sorted((self.index.get(key, set()) for key in keys), key=len)
            smallest, others = sets[0], sets[1:]
            met = (item_id for item_id in smallest if all(item_id in other for other in others))
            self._found[keys] = heapq.nsmallest(MATCH_CAP, met)
        return list(self._found[keys])


def _match_keys(
    item: CatalogueItem, name: str, field: FieldSpec, templates: QueryTemplates, every_value: bool
) -> list[Any]:
    """The values a slot can take for this item, as its constraints record them."""
    if field.kind == "title":
        return [item.title.lower()]
    if field.kind in ("year", "decade"):
        year = year_of(item.fields.get(field.key))
        return [] if year is None else [year if field.kind == "year" else year // 10 * 10]
    if field.kind == "text":
        return []
    values = field_values(field, item.fields.get(field.key))
    if every_value:
        return [*values, whole_value(field, item.fields[field.key])] if values else []
    pick = templates.slot(name).pick
    if pick == "whole" and values:
        values = [whole_value(field, item.fields[field.key])]
    return values[:1] if pick == "first" else values


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


def _attribute_examples(
    item: CatalogueItem, rng: random.Random, count: int, attributes: Sequence[str]
) -> list[dict[str, Any]]:
    examples = []
    for attribute in rng.sample(attributes, k=min(count, len(attributes))):
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


def build_examples(
    items: Sequence[CatalogueItem], config: ExampleConfig, templates: QueryTemplates | None = None
) -> list[dict[str, Any]]:
    """All examples for ``items`` (with their semantic IDs), deterministic for a given config;
    ``templates`` is the catalogue's query configuration [the films']."""
    templates = templates or films_templates()
    rng = random.Random(config.seed)
    train_pool = [t for t in templates.examples.templates if not t.held_out]
    valid_pool = [t for t in templates.examples.templates if t.held_out]
    matcher = MatchIndex(items, templates)
    examples: list[dict[str, Any]] = []
    for item in items:
        target, item_id = example_target(item), item.item_id
        for split, pool, count in (
            ("train", train_pool, config.train_queries_per_item),
            ("valid", valid_pool, config.valid_queries_per_item),
        ):
            for template, query, constraints in _query_examples(item, pool, count, rng, config, templates):
                example = query_example(split, template.name, item_id, query, target)
                if split == "valid":
                    example["matching_item_ids"] = matcher.matching(constraints) or [item_id]
                examples.append(example)
        for _ in range(config.index_examples_per_item):
            examples.append(query_example("train", "index", item_id, index_text(item, templates), target))
        attributes = templates.examples.attributes
        examples.extend(_attribute_examples(item, rng, config.attribute_examples_per_item, attributes))
    rng.shuffle(examples)
    return examples
