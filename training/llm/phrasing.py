"""How the examples file's templates phrase an item's fields: slot values (with synonyms, decades in
words, forms), the constraint each puts on matching items, and the light noise (lowercase, one typo)
on top. What the slots are and how each is phrased comes from the catalogue's query configuration
(``template_spec.py``)."""

from __future__ import annotations

import random
import re
import string
from typing import Any

from training.data.items import CatalogueItem
from training.llm.template_spec import (
    FieldSpec,
    QueryTemplates,
    Template,
    decade_spellings,
    field_values,
    whole_value,
    year_of,
)

LINKING_WORDS = frozenset(
    ["the", "a", "an", "of", "and", "in", "on", "at", "to", "for", "with", "from", "by", "part"]
)


class MissingField(Exception):
    """The item lacks a field the template needs; the template is skipped for this item."""


def spell(field: FieldSpec, value: str, rng: random.Random, keep_value: bool) -> str:
    """The value, or one of its synonyms when the field has them (a value without any: as written, or
    lower-cased); ``keep_value`` counts the value itself among its synonyms."""
    if field.synonyms is None:
        return value
    words = field.synonyms.get(value)
    if words is None:
        choices = [value.lower() if field.lowercase else value]
    else:
        choices = [*words, value] if keep_value else list(words)
    return rng.choice(choices)


def text_words(text: str, rng: random.Random) -> str | None:
    """Two or three neighbouring content words of a free text, as someone remembering it would type."""
    words = [w for w in re.findall(r"[\w'-]+", text) if len(w) > 3 and w.lower() not in LINKING_WORDS]
    if len(words) < 2:
        return None
    size = min(len(words), rng.choice((2, 3)))
    start = rng.randrange(len(words) - size + 1)
    return " ".join(words[start : start + size]).lower()


def form(forms: tuple[str, ...] | None, value: str, rng: random.Random) -> str:
    return value if forms is None else rng.choice(forms).format(x=value)


class Slots:
    """Phrases for one item's fields; every call records the constraint it puts on matching items."""

    def __init__(self, item: CatalogueItem, rng: random.Random, templates: QueryTemplates) -> None:
        self.item, self.fields, self.rng, self.templates = item, item.fields, rng, templates
        self.constraints: dict[str, list[Any]] = {}

    def _constrain(self, name: str, value: Any) -> None:
        self.constraints.setdefault(name, []).append(value)

    def _values(self, name: str, field: FieldSpec) -> list[str]:
        values = field_values(field, self.fields.get(field.key))
        if not values:
            raise MissingField(name)
        return values

    def _year(self, name: str, field: FieldSpec) -> int:
        year = year_of(self.fields.get(field.key))
        if year is None:
            raise MissingField(name)
        return year

    def _pick(self, name: str, field: FieldSpec) -> str:
        slot = self.templates.slot(name)
        values = self._values(name, field)
        if slot.pick == "first":
            value = values[0]
        elif slot.pick == "whole":
            value = whole_value(field, self.fields[field.key])
        else:
            pool = values[: slot.pool] if slot.pick == "pool" and slot.pool else values
            if slot.pick == "pool":
                pool = [v for v in pool if v not in self.constraints.get(name, [])]
            if not pool:
                raise MissingField(name)
            value = self.rng.choice(pool)
        self._constrain(name, value)
        return spell(field, value, self.rng, keep_value=False)

    def fill(self, name: str) -> str:
        """One phrase for the slot ``name``; ``MissingField`` when the item has no value for it."""
        field, slot = self.templates.fields[name], self.templates.slot(name)
        if field.kind == "title":
            self._constrain(name, self.item.title)
            return self.item.title
        if field.kind == "year":
            year = self._year(name, field)
            self._constrain(name, year)
            text = str(year)
        elif field.kind == "decade":
            decade = self._year(name, field) // 10 * 10
            self._constrain(name, decade)
            text = self.rng.choice(decade_spellings(field, decade, slot.spellings))
        elif field.kind == "text":
            words = text_words(" ".join(self._values(name, field)), self.rng)
            if words is None:
                raise MissingField(name)
            text = words  # no constraint: a few words of a text say little about which items match
        else:
            text = self._pick(name, field)
        return form(slot.forms, text, self.rng)


def render(template: Template, slots: Slots) -> str:
    """The template with its slots filled left to right (the order the random draws are made in)."""
    parts = []
    for literal, name, _, _ in string.Formatter().parse(template.text):
        parts.append(literal)
        if name is not None:
            parts.append(slots.fill(name))
    return "".join(parts)


def typo(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not candidates:
        return text
    index = rng.choice(candidates)
    word, at = words[index], rng.randrange(1, len(words[index]) - 1)
    kind = rng.choice(["drop", "swap", "double"])
    if kind == "drop":
        word = word[:at] + word[at + 1 :]
    elif kind == "swap":
        word = word[: at - 1] + word[at] + word[at - 1] + word[at + 1 :]
    else:
        word = word[:at] + word[at] + word[at:]
    words[index] = word
    return " ".join(words)


def add_noise(text: str, rng: random.Random, lowercase: float, typo_rate: float) -> str:
    text = re.sub(r"\b([Aa]) ([AEIOUaeiou])", r"\1n \2", text)  # "a action film" -> "an action film"
    if rng.random() < lowercase:
        text = text.lower()
    if rng.random() < typo_rate:
        text = typo(text, rng)
    return re.sub(r"\s+", " ", text).strip()
