"""Fresh training queries every epoch: new slot values, forms and noise on each pass over the items.

A fixed list of phrasings repeats the same strings on every pass; here epoch ``e`` draws its queries
from ``Random(f"{seed}-{e}")``, so passes differ while a run stays reproducible. A query names one to
three facets of an item in random forms; which facets, their forms and weights come from the
catalogue's query configuration (``template_spec.py``; for films ``templates/films.yaml``: a title
lower-cased, without its article, one side of a colon, truncated; a director by full name or surname;
any listed cast member, actors who appear in several films more often; a country or language; a year or
decade in figures or words; genre synonyms). Openers and word order vary; typos are added at random.
The configuration's held-out validation templates are never used.

The module-level knobs below apply to every catalogue and are read at call time, so an experiment can
set them: ``CAST_WEIGHT_POWER``, ``MULTI_CAST_RATE``, ``SHOWN_NAME_RATE`` and ``ANY_NAME_RATE`` for every
facet with ``pick: popular``, ``FOREIGN_RATE`` for decades and genres, ``TITLE_TYPO_RATE`` for a title
typed alone, ``title_form`` for every title.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from semantic_ids.query_attributes import decade_forms, genre_words
from training.data.items import CatalogueItem
from training.llm.examples import MATCH_CAP, MatchIndex, example_target, query_example
from training.llm.phrasing import LINKING_WORDS, form, spell, text_words, typo
from training.llm.template_files import films_templates
from training.llm.template_spec import (
    FacetSpec,
    FieldSpec,
    QueryTemplates,
    decade_spellings,
    field_values,
    whole_value,
    year_of,
)

_ARTICLES = ("the ", "a ", "an ")
# Cast members (any ``pick: popular`` facet's names) are drawn with weight (items of theirs in the
# catalogue) ** CAST_WEIGHT_POWER: the names people type are those of actors in many films; a cast
# facet names 2-3 of them at MULTI_CAST_RATE (when the facet has ``multi_forms``).
CAST_WEIGHT_POWER = 1.5
MULTI_CAST_RATE = 0.0
# At SHOWN_NAME_RATE the name is instead one of those the item text shows (a facet's first ``shown``),
# uniformly: the facts every retriever can see, and the examples file's templates ask about, one-film
# actors included, whom popularity alone almost never draws.
SHOWN_NAME_RATE = 0.0
# At ANY_NAME_RATE the name is any of the item's names, uniformly: popularity alone almost never draws
# an actor billed far down, and people ask for those too (issue 24: the 12th-billed actor of a film).
ANY_NAME_RATE = 0.35
TITLE_TYPO_RATE = 0.35
# At FOREIGN_RATE a decade, or a genre of the films (their ``genres`` field: the word list's genre words
# are film words, "Kriegsfilm"), is written in French, Spanish or German instead, from the word list the
# service parses queries with (``semantic_ids/attribute_words.yaml``): "une comédie des années 80" asks
# for what "an 80s comedy" does.
FOREIGN_RATE = 0.15
FOREIGN_LANGUAGES = ("fr", "es", "de")


def _title_keywords(title: str, rng: random.Random) -> str:
    """Some of the title's content words in order, as people search: "harry potter azkaban"."""
    words = [w for w in re.sub(r"[^\w\s']", " ", title).split() if w.lower() not in LINKING_WORDS]
    if len(words) < 3:
        return title
    keep = sorted(rng.sample(range(1, len(words)), rng.randint(1, min(3, len(words) - 1))))
    return " ".join(words[i] for i in [0, *keep])


def title_form(title: str, rng: random.Random) -> str:
    """The title as people type it: whole, without its article, one side of a colon, its first words,
    or a few of its content words."""
    draw = rng.random()
    if draw < 0.15 and title.lower().startswith(_ARTICLES):
        title = title.split(" ", 1)[1]
    elif draw < 0.35 and re.search(r"[:–]| - ", title):
        title = rng.choice([p for p in re.split(r"\s*[:–]\s*|\s+-\s+", title) if p.strip()] or [title])
    elif draw < 0.45 and len(title.split()) >= 3:
        words = title.split()
        title = " ".join(words[: rng.randint(2, len(words) - 1)])
    elif draw < 0.55:
        title = _title_keywords(title, rng)
    if rng.random() < 0.3:
        title = re.sub(r"[^\w\s']", " ", title)
    return title


Counts = Mapping[str, Counter[str]]  # per facet with pick popular: how many items list each name


class _Facets:
    """One item's facets, each rendered in a random form (None when the item lacks the field).

    ``constraints`` records what each rendered facet asks of a matching item, as ``MatchIndex(...,
    every_value=True)`` keys them: the title itself (a shortened or typo'd title still means this one),
    the year, the decade, the value named (by its full name when only a surname was written). Recording
    draws no random numbers: the queries are the same with or without anyone reading it."""

    def __init__(
        self, item: CatalogueItem, rng: random.Random, templates: QueryTemplates, counts: Counts
    ) -> None:
        self.item, self.rng, self.templates, self.counts = item, rng, templates, counts
        self.constraints: dict[str, list[Any]] = {}

    def _constrain(self, name: str, *values: Any) -> None:
        self.constraints.setdefault(name, []).extend(values)

    def render(self, name: str) -> str | None:
        field, facet = self.templates.fields[name], self.templates.queries.facets[name]
        raw = self.item.fields.get(field.key)
        if field.kind == "title":
            self._constrain(name, self.item.title.lower())
            return title_form(self.item.title, self.rng)
        if field.kind in ("year", "decade"):
            year = year_of(raw) if raw else None
            if year is None:
                return None
            self._constrain(name, year if field.kind == "year" else year // 10 * 10)
            if field.kind == "year":
                return form(facet.forms, str(year), self.rng)
            decade = year // 10 * 10
            foreign = self._foreign(decade_forms, decade)
            if foreign is not None:
                return foreign  # its own preposition: "des années 80", "aus den 80ern"
            spelt = self.rng.choice(decade_spellings(field, decade, facet.spellings))
            return form(facet.forms, spelt, self.rng)
        if field.kind == "text":
            words = text_words(" ".join(field_values(field, raw)), self.rng)
            return None if words is None else form(facet.forms, words, self.rng)
        if facet.pick == "popular":
            return self._popular(name, field, facet)
        return self._value(name, field, facet, raw)

    def _value(self, name: str, field: FieldSpec, facet: FacetSpec, raw: Any) -> str | None:
        values = field_values(field, raw)
        if not values:
            return None
        if facet.pick == "whole":
            value = whole_value(field, raw)
        else:
            value = values[0] if facet.pick == "first" else self.rng.choice(values)
        self._constrain(name, value)
        if self.templates.name == "films" and field.key == "genres":
            foreign = self._foreign(genre_words, value)
            if foreign is not None:
                return foreign
        if facet.surname_rate and self.rng.random() < facet.surname_rate and " " in value:
            value = value.split()[-1]  # "a Nolan film"
        return form(facet.forms, spell(field, value, self.rng, facet.keep_value), self.rng)

    def _popular(self, name: str, field: FieldSpec, facet: FacetSpec) -> str | None:
        names = field_values(field, self.item.fields.get(field.key))
        if not names:
            return None
        weights = [self.counts[name][n] ** CAST_WEIGHT_POWER for n in names]
        if facet.multi_forms is not None and len(names) > 1 and self.rng.random() < MULTI_CAST_RATE:
            count = min(len(names), self.rng.choice((2, 2, 3)))
            chosen = list(dict.fromkeys(self.rng.choices(names, weights=weights, k=count * 2)))[:count]
            joined = self.rng.choice((" and ", ", ", " ")).join(chosen)
            self._constrain(name, *chosen)
            return form(facet.multi_forms, joined, self.rng)
        if SHOWN_NAME_RATE and facet.shown and self.rng.random() < SHOWN_NAME_RATE:
            chosen_name = self.rng.choice(names[: facet.shown])
        elif self.rng.random() < ANY_NAME_RATE:
            chosen_name = self.rng.choice(names)
        else:
            chosen_name = self.rng.choices(names, weights=weights)[0]
        self._constrain(name, chosen_name)
        if facet.surname_rate and self.rng.random() < facet.surname_rate and " " in chosen_name:
            chosen_name = chosen_name.split()[-1]  # "a Reeves movie"
        return form(facet.forms, chosen_name, self.rng)

    def _foreign(self, words_of: Callable[[Any, str], list[str]], value: Any) -> str | None:
        """At FOREIGN_RATE, ``value`` in one of FOREIGN_LANGUAGES' words (None: not now, or no words)."""
        if self.rng.random() >= FOREIGN_RATE:
            return None
        words = words_of(value, self.rng.choice(FOREIGN_LANGUAGES))
        return self.rng.choice(words) if words else None


def _choose_facets(rng: random.Random, templates: QueryTemplates) -> list[str]:
    spec, title = templates.queries, templates.title_slot
    count = rng.choices([1, 2, 3], weights=[0.45, 0.35, 0.2])[0]
    if count == 1:  # one vague facet fits hundreds of items: a lone facet is mostly a name
        return [rng.choice(spec.lone) if rng.random() < 0.9 else rng.choice(list(spec.facets))]
    others = [f for f in spec.facets if f != title]
    chosen = [title] if title in spec.facets and rng.random() < 0.2 else []
    count = min(count, len(chosen) + len(others))  # a catalogue with few fields
    while len(chosen) < count:
        facet = rng.choices(others, weights=[spec.facets[f].weight for f in others])[0]
        if facet not in chosen:
            chosen.append(facet)
    return sorted(chosen, key=spec.order.index) if rng.random() < 0.7 else rng.sample(chosen, len(chosen))


def compose_query(
    item: CatalogueItem, rng: random.Random, templates: QueryTemplates, counts: Counts
) -> tuple[str, dict[str, list[Any]]]:
    """A query for ``item`` and the constraints it puts on a matching item (``_Facets``)."""
    facets = _Facets(item, rng, templates, counts)
    names = _choose_facets(rng, templates)
    parts = [text for text in (facets.render(name) for name in names) if text]
    text = rng.choice(templates.queries.openers) + " ".join(parts or [item.title])
    if rng.random() < templates.queries.lowercase_rate:
        text = text.lower()
    # A title typed alone is where typos hurt most (nothing else in the query to go by).
    alone = names == [templates.title_slot]
    if rng.random() < (TITLE_TYPO_RATE if alone else templates.queries.typo_rate):
        text = typo(text, rng)
    constraints = facets.constraints if parts else {templates.title_slot: [item.title.lower()]}
    return re.sub(r"\s+", " ", text).strip(), constraints


def popularity(items: Sequence[CatalogueItem], templates: QueryTemplates) -> dict[str, Counter[str]]:
    """For every facet with pick popular: how many items list each of its values."""
    return {
        name: Counter(v for item in items for v in field_values(field, item.fields.get(field.key)))
        for name, field in templates.fields.items()
        if name in templates.queries.facets and templates.queries.facets[name].pick == "popular"
    }


# An epoch is generated, shuffled and encoded this many items at a time, so a catalogue of millions
# never holds a whole epoch's queries (8 a item) in memory, nor waits for them before its first step.
# Up to this many items the epoch is one chunk, drawn exactly as a whole epoch always was.
EPOCH_CHUNK_ITEMS = 20_000


class QueryGenerator:
    """``epoch(e)``: ``per_item`` fresh query examples for every item, shuffled; seeded by (seed, e).
    ``templates`` is the catalogue's query configuration [the films'].

    ``chunks(e)`` gives the same epoch a chunk of ``EPOCH_CHUNK_ITEMS`` items at a time: past that size
    the items are dealt into chunks by a seeded permutation (a chunk is a random slice of the catalogue,
    whatever order the catalogue file has) and each chunk's queries are shuffled among themselves."""

    def __init__(
        self,
        items: Sequence[CatalogueItem],
        per_item: int,
        seed: int,
        templates: QueryTemplates | None = None,
        *,
        chunk_items: int | None = None,
    ) -> None:
        self.items, self.per_item, self.seed = list(items), per_item, seed
        self.templates = templates or films_templates()
        self.counts = popularity(items, self.templates)
        self.chunk_items = chunk_items or EPOCH_CHUNK_ITEMS

    def epoch(self, epoch: int, *, with_matching: bool = False) -> list[dict[str, Any]]:
        """The epoch's examples; ``with_matching`` adds ``matching_item_ids`` (every item that fits all
        of a query's facets, as in the examples file's held-out rows) for evaluation, not training."""
        order = self._dealt(epoch)
        examples = [pair for index in range(self.chunk_count) for pair in self._chunk(epoch, index, order)]
        if with_matching:
            self._add_matching(examples)
        return [example for example, _ in examples]

    @property
    def chunk_count(self) -> int:
        return max(1, -(-len(self.items) // self.chunk_items))

    def chunks(self, epoch: int) -> Iterator[list[dict[str, Any]]]:
        """The epoch's examples, one chunk of items at a time (generated when asked for)."""
        order = self._dealt(epoch)
        for index in range(self.chunk_count):
            yield [example for example, _ in self._chunk(epoch, index, order)]

    def first_chunk_sample(
        self, pick: Callable[[list[dict[str, Any]]], list[dict[str, Any]]], *, with_matching: bool = False
    ) -> list[dict[str, Any]]:
        """``pick``'s choice among epoch 0's first chunk (the whole first epoch up to ``chunk_items``
        items): the phrasings training saw first, without generating a whole epoch of a large catalogue;
        ``with_matching`` matches the chosen examples only (``epoch``'s ``matching_item_ids``)."""
        pairs = self._chunk(0, 0, self._dealt(0))
        constraints = {id(example): found for example, found in pairs}
        chosen = pick([example for example, _ in pairs])
        if with_matching:
            self._add_matching([(example, constraints[id(example)]) for example in chosen])
        return chosen

    def _dealt(self, epoch: int) -> list[int] | None:
        """The epoch's item order, which the chunks slice (None: one chunk, the catalogue's order)."""
        if self.chunk_count == 1:
            return None
        order = list(range(len(self.items)))
        random.Random(f"{self.seed}-{epoch}-order").shuffle(order)
        return order

    def _chunk(
        self, epoch: int, index: int, order: list[int] | None
    ) -> list[tuple[dict[str, Any], dict[str, list[Any]]]]:
        """Chunk ``index`` of epoch ``epoch`` dealt by ``order`` (``_dealt``): (example, the constraints
        its query puts on an item)."""
        if order is None:
            rng, items = random.Random(f"{self.seed}-{epoch}"), self.items
        else:
            share = order[index * self.chunk_items : (index + 1) * self.chunk_items]
            rng, items = random.Random(f"{self.seed}-{epoch}-{index}"), [self.items[i] for i in share]
        examples = []
        for item in items:
            target = example_target(item)
            for _ in range(self.per_item):
                query, constraints = compose_query(item, rng, self.templates, self.counts)
                examples.append(
                    (query_example("train", "generated", item.item_id, query, target), constraints)
                )
        rng.shuffle(examples)
        return examples

    def _add_matching(self, examples: Sequence[tuple[dict[str, Any], dict[str, list[Any]]]]) -> None:
        """Every item fitting each query's constraints, capped at MATCH_CAP with the source item kept."""
        matcher = MatchIndex(self.items, self.templates, every_value=True)
        for example, constraints in examples:
            found = matcher.matching(constraints)
            item_id = example["item_id"]
            example["matching_item_ids"] = found if item_id in found else [item_id, *found][:MATCH_CAP]
