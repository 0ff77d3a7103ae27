"""What a catalogue's query configuration says: the slots its queries name, how each is phrased, and the
templates of the examples file (seen in training, or held out for validation).

A *slot* (``director``, ``genre``) reads one catalogue field (``director``, ``genres``) of a *kind*:

    title     the item's title
    name      people or makers ("by {x}"): lists can be weighted by how often a name recurs
    category  values from a small set, with optional synonyms ("Sci-Fi": ["sci-fi", "science fiction"])
    year      a year (a whole number)
    decade    the decade of a year field ("1990s", "90s", "nineties")
    text      free text, of which a query names a few words

Two readers phrase the slots differently, so each has its own options: ``FacetSpec`` for the fresh
training queries (``query_generator.py``), ``SlotSpec`` for the examples file's templates
(``phrasing.py``). The shapes live here; reading and writing them is ``template_files.py``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KINDS = ("title", "name", "category", "year", "decade", "text")
# How one value is taken from a field: a random one, the first listed, the value as written, random
# with recurring names more often (queries only), or one of the first ``pool`` not yet used (templates).
QUERY_PICKS = ("any", "first", "whole", "popular")
SLOT_PICKS = ("any", "first", "whole", "pool")
# "{decade}" is 1990, "{short}" 90, "{word}" "nineties"; spellings with "{word}" need a word.
QUERY_DECADES = ("{decade}s", "{short}s", "'{short}s", "{word}", "the {word}")
SLOT_DECADES = ("{decade}s", "{short}s", "'{short}s", "{word}")
DECADE_WORDS = {
    1910: "tens", 1920: "twenties", 1930: "thirties", 1940: "forties", 1950: "fifties", 1960: "sixties",
    1970: "seventies", 1980: "eighties", 1990: "nineties", 2000: "two-thousands", 2010: "twenty-tens",
}  # fmt: skip


class TemplateError(ValueError):
    """A query configuration that cannot be used; the message is one line: where, and what is wrong."""


@dataclass(frozen=True)
class FieldSpec:
    """One slot: the catalogue field it reads and what kind of value that is."""

    key: str  # the catalogue field ("title" for the item's title)
    kind: str
    split: bool = False  # a string value is a comma-separated list ("Lana Wachowski, Lilly Wachowski")
    synonyms: Mapping[str, tuple[str, ...]] | None = None  # None: values are written as they are
    # category: words or phrases for a value that training never uses: the fusion tuning's stand-ins
    # for the paraphrases no configuration lists ("something terrifying": Horror)
    held_out_synonyms: Mapping[str, tuple[str, ...]] | None = None
    lowercase: bool = False  # with synonyms: a value that has none is written in lower case
    words: Mapping[int, str] | None = None  # decade: the decades' words [DECADE_WORDS]

    def decade_words(self) -> Mapping[int, str]:
        return DECADE_WORDS if self.words is None else self.words


@dataclass(frozen=True)
class FacetSpec:
    """How the fresh training queries phrase one slot."""

    weight: float = 1.0  # how often the slot is drawn into a query of two or three facets
    pick: str = "any"
    forms: tuple[str, ...] | None = None  # "{x}" is the value; None: the value alone
    multi_forms: tuple[str, ...] | None = None  # pick popular: forms for two or three names at once
    surname_rate: float = 0.0  # name: how often a full name is cut to its last word ("a Nolan film")
    keep_value: bool = False  # with synonyms: the value as written is one of them too
    spellings: tuple[str, ...] = QUERY_DECADES
    shown: int = 0  # pick popular: the first ``shown`` names are those the item text shows (0: none)


@dataclass(frozen=True)
class SlotSpec:
    """How the examples file's templates fill one slot."""

    pick: str = "any"
    pool: int = 0  # pick pool: only the first ``pool`` values (0: all), never the same one twice
    forms: tuple[str, ...] | None = None
    spellings: tuple[str, ...] = SLOT_DECADES


@dataclass(frozen=True)
class QuerySpec:
    """The fresh training queries: which facets, how often, in what order, with what around them."""

    facets: Mapping[str, FacetSpec]
    openers: tuple[str, ...] = ("",)
    lone: tuple[str, ...] = ("title",)  # a one-facet query is mostly one of these (names bind items)
    order: tuple[str, ...] = ()  # the usual order of facets in a query [the facets' order]
    lowercase_rate: float = 0.5
    typo_rate: float = 0.2  # of a query; a title typed alone has TITLE_TYPO_RATE (query_generator.py)


@dataclass(frozen=True)
class Template:
    name: str
    text: str  # "{genre} by {director}": slots in braces, filled left to right
    weight: float = 1.0
    held_out: bool = False

    @property
    def slots(self) -> tuple[str, ...]:
        return placeholders(self.text)


@dataclass(frozen=True)
class ExampleSpec:
    """The examples file: slot options, the templates, attribute examples, the item's index text."""

    slots: Mapping[str, SlotSpec]
    templates: tuple[Template, ...]
    attributes: tuple[str, ...] = ("title",)  # catalogue fields the model learns to say of an ID
    # Parts of the one-line profile of an item, each a list of alternatives: the first whose slots the
    # item has is written; the parts are joined with ". ".
    index_text: tuple[tuple[str, ...], ...] = (("{title}",),)


@dataclass(frozen=True)
class QueryTemplates:
    name: str
    fields: Mapping[str, FieldSpec]
    queries: QuerySpec
    examples: ExampleSpec

    @property
    def title_slot(self) -> str:
        return next(name for name, field in self.fields.items() if field.kind == "title")

    def slot(self, name: str) -> SlotSpec:
        """The examples' options for ``name``; a slot without any takes the defaults of its kind."""
        return self.examples.slots.get(name) or default_slot(self.fields[name])

    def catalogue_keys(self) -> set[str]:
        return {field.key for field in self.fields.values() if field.kind != "title"}

    def framing_text(self) -> list[str]:
        """The words queries wrap around the values they name: the openers, the facets' forms and the
        training templates with their slots taken out ("show me", "starring", "a film"). The lexical
        retriever leaves them out of queries. The held-out templates are not read: they stay unseen."""
        forms = [
            form
            for facet in self.queries.facets.values()
            for form in (*(facet.forms or ()), *(facet.multi_forms or ()))
        ]
        texts = [*self.queries.openers, *forms, *(t.text for t in self.examples.templates if not t.held_out)]
        texts += [form for slot in self.examples.slots.values() for form in slot.forms or ()]
        return [cleared for text in texts if (cleared := _SLOT.sub(" ", text).strip())]


_SLOT = re.compile(r"\{[^}]*\}")


def default_slot(field: FieldSpec) -> SlotSpec:
    return SlotSpec(pick="whole" if field.kind == "year" else "any")


def placeholders(text: str) -> tuple[str, ...]:
    """The slot names in a template, left to right; ``TemplateError`` for anything but ``{name}``."""
    names = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as error:
        raise TemplateError(f"{text!r}: {error}") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise TemplateError(f"{text!r}: write slots as {{name}}, got {{{name}}}")
        names.append(name)
    return tuple(names)


def field_values(field: FieldSpec, raw: Any) -> list[str]:
    """A field's values as text: a list's entries, a split field's comma-separated parts, else the value."""
    if raw is None:
        return []
    parts = raw if isinstance(raw, list) else str(raw).split(",") if field.split else [raw]
    return [str(part).strip() for part in parts if str(part).strip()]


def whole_value(field: FieldSpec, raw: Any) -> str:
    """A field's value as written (pick whole): a list's entries joined, else the value itself."""
    return ", ".join(field_values(field, raw)) if isinstance(raw, list) else str(raw).strip()


def year_of(raw: Any) -> int | None:
    """A year as a whole number, or None when the value is not one."""
    if isinstance(raw, bool) or raw is None:
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return int(value) if value.is_integer() else None


def decade_spellings(field: FieldSpec, decade: int, spellings: tuple[str, ...]) -> list[str]:
    word = field.decade_words().get(decade)
    values = {"decade": decade, "short": f"{decade % 100:02d}", "word": word}
    return [s.format(**values) for s in spellings if word is not None or "{word}" not in s]
