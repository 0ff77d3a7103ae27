"""The query configuration of a catalogue without a file of its own, built from the fields it has.

Each field is looked at across the catalogue and given a kind:

- name: a key that says it holds people or makers (author, artist, brand, publisher...): "by {x}";
- category: short strings, or lists of them (genre, tags, colour, format): the value, or labelled;
- year: whole numbers between 1800 and 2100 (1000 and 2100 under a key with "year" in it), with a
  decade slot beside it;
- text: long strings (descriptions), used sparingly: a few of their words.

Left out: identifiers (keys such as ``sku``, ``isbn``, ``url``, ``*_id``; values without letters),
numbers that are not years, booleans, nested objects, and fields fewer than one item in ten has. The
held-out templates use the same slots in wording that neither the training templates nor the fresh
queries use ("looking for ...", "something X made in the 1990s"). What was chosen is written to the
run folder (``query_templates.json``): a starting point for a file of one's own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from training.data.items import CatalogueItem
from training.llm.template_spec import (
    SLOT_DECADES,
    ExampleSpec,
    FacetSpec,
    FieldSpec,
    QuerySpec,
    QueryTemplates,
    Template,
    year_of,
)

logger = logging.getLogger(__name__)

_PEOPLE = frozenset(["author", "artist", "actor", "cast", "director", "creator", "writer", "composer",
                     "designer", "illustrator", "narrator", "performer", "band", "singer", "by"])  # fmt: skip
_MAKERS = frozenset(["brand", "maker", "manufacturer", "publisher", "label", "studio", "vendor", "company"])
_IDENTIFIERS = frozenset(["id", "isbn", "sku", "url", "uri", "link", "ean", "upc", "asin", "image", "href"])
_OPENERS = ("", "", "", "", "a ", "the ", "find ", "show me ", "any ", "search ", "suggest ", "i want ",
            "need ", "give me ", "i'd like ")  # fmt: skip
_MIN_SHARE = 0.1  # of the items that have the field
_MAX_FIELDS = {"name": 3, "category": 4, "year": 1, "text": 1}


@dataclass(frozen=True)
class _Found:
    key: str
    kind: str
    is_list: bool
    split: bool = False
    person: bool = False


def _key_words(key: str) -> set[str]:
    words = [w for w in re.split(r"[\W_]+", key.lower()) if w]
    return {w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words}


def _strings(values: Sequence[Any]) -> list[str] | None:
    """Every string in the field's values (lists flattened); None when some value is not text."""
    flat = [v for value in values for v in (value if isinstance(value, list) else [value])]
    if not flat or not all(isinstance(v, str) for v in flat):
        return None
    return flat


def _is_year_field(key: str, values: Sequence[Any]) -> bool:
    if any(isinstance(v, bool | list | dict) for v in values):
        return False
    years = [year_of(v) for v in values]
    low = 1000 if "year" in key.lower() else 1800
    return all(year is not None and low <= year <= 2100 for year in years)


def _classify(key: str, values: Sequence[Any]) -> _Found | None:
    words = _key_words(key)
    if words & _IDENTIFIERS or key.lower().endswith("id"):
        return None
    if _is_year_field(key, values):
        return _Found(key, "year", is_list=False)
    strings = _strings(values)
    if strings is None:
        return None
    if (
        sum(s.startswith(("http://", "https://")) or not re.search(r"[^\W\d_]", s) for s in strings)
        > len(strings) / 2
    ):
        return None  # links and codes
    is_list = any(isinstance(v, list) for v in values)
    if not is_list and sum(len(s.split()) for s in strings) / len(strings) > 8:
        return _Found(key, "text", is_list=False)
    people, makers = bool(words & _PEOPLE), bool(words & _MAKERS)
    commas = sum("," in s for s in strings) / len(strings)
    split = not is_list and commas >= 0.2 and (people or any(w.endswith("s") for w in re.split(r"\W", key)))
    kind = "name" if people or makers else "category"
    return _Found(key, kind, is_list=is_list, split=split, person=people)


def _found_fields(items: Sequence[CatalogueItem]) -> list[_Found]:
    """The usable fields, most widely held first within each kind, at most ``_MAX_FIELDS`` a kind."""
    values: dict[str, list[Any]] = {}
    for item in items:
        for key, value in item.fields.items():
            values.setdefault(key, []).append(value)
    held = sorted(values, key=lambda key: -len(values[key]))  # stable: first seen first among equals
    found = [_classify(k, values[k]) for k in held if len(values[k]) >= _MIN_SHARE * len(items)]
    kept: list[_Found] = []
    for field in found:
        if field is not None and sum(f.kind == field.kind for f in kept) < _MAX_FIELDS[field.kind]:
            kept.append(field)
    return kept


def _slot_name(key: str, taken: set[str]) -> str:
    base = re.sub(r"\W+", "_", key.lower()).strip("_") or "field"
    name, number = base, 2
    while name in taken or not name.isidentifier():
        name, number = f"{base}_{number}" if base.isidentifier() else f"field_{number}", number + 1
    taken.add(name)
    return name


def _label(key: str) -> str:
    words = key.replace("_", " ").strip().lower()
    if words.endswith("ies"):
        return words[:-3] + "y"
    return words[:-1] if words.endswith("s") and not words.endswith("ss") else words


def _facet(found: _Found, label: str) -> FacetSpec:
    if found.kind == "name":
        forms = ("{x}", "{x}", "by {x}", "{x}'s" if found.person else "from {x}")
        multi = ("{x}", "by {x}") if found.is_list else None
        pick = "popular" if found.is_list else "any"
        return FacetSpec(1.5 if found.person else 1.2, pick, forms, multi, 0.3 if found.person else 0.0)
    if found.kind == "category":
        escaped = label.replace("{", "{{").replace("}", "}}")
        return FacetSpec(1.0, forms=("{x}", "{x}", "{x}", f"{escaped} {{x}}"))
    if found.kind == "year":
        return FacetSpec(0.6, forms=("{x}", "{x}", "from {x}", "({x})"))
    return FacetSpec(0.3, forms=("{x}", "about {x}"))


def _roles(kinds: Mapping[str, str], people: set[str]) -> dict[str, str]:
    """Role -> slot: T title, N1 the first name field, N2 a second one of people, C1/C2 categories,
    Y year, D decade (those the catalogue has)."""
    by_kind: dict[str, list[str]] = {}
    for name, kind in kinds.items():
        by_kind.setdefault(kind, []).append(name)
    names = by_kind.get("name", [])
    roles = {"T": "title"}
    roles |= {"N1": names[0]} if names else {}
    roles |= {"N2": names[1]} if len(names) > 1 and names[1] in people else {}
    roles |= {f"C{i + 1}": name for i, name in enumerate(by_kind.get("category", [])[:2])}
    roles |= {role: by_kind[kind][0] for kind, role in (("year", "Y"), ("decade", "D")) if kind in by_kind}
    return roles


# (name, wording, weight) over roles; a template whose roles the catalogue lacks is left out.
_TRAIN = (
    ("title", "{T}", 3.0), ("title_Y", "{T} ({Y})", 1.5), ("title_N1", "{T} by {N1}", 1.0),
    ("title_C1", "{T} {C1}", 0.5), ("N1", "{N1}", 1.0), ("by_N1", "by {N1}", 1.0), ("N2", "{N2}", 1.0),
    ("C1_N1", "{C1} by {N1}", 1.0), ("C1_Y", "{C1} from {Y}", 1.0), ("D_C1", "{D} {C1}", 1.0),
    ("C2_N1", "{C2} by {N1}", 0.7), ("C1_C2", "{C1} {C2}", 0.7), ("N1_Y", "{N1} from {Y}", 1.0),
    ("N1_N2", "{N1} and {N2}", 0.7), ("long_N1", "I want a {C1} by {N1} from the {D}", 0.5),
    ("long_C1", "can you find me something {C1} from {Y}", 0.5),
)  # fmt: skip
_HELD_OUT = (
    ("v_title_looking", "looking for {T}"), ("v_title_N1", "{T}, the one by {N1}"),
    ("v_title_D", "{T}, the {D} one"), ("v_C1_N1", "some {C1} from {N1}"),
    ("v_N1_D", "something {N1} made in the {D}"),
    ("v_C1_Y", "recommend a {Y} {C1}"), ("v_C1_C2", "anything {C1} that is also {C2}"),
    ("v_N1_Y", "what did {N1} make in {Y}?"), ("v_C1_N2", "{C1} featuring {N2}"),
    ("v_N1_only", "everything from {N1}"),
)  # fmt: skip


def _fill(text: str, roles: Mapping[str, str]) -> str | None:
    needed = re.findall(r"\{(\w+)\}", text)
    if not all(role in roles for role in needed):
        return None
    return re.sub(r"\{(\w+)\}", lambda m: "{" + roles[m.group(1)] + "}", text)


def _templates(roles: Mapping[str, str]) -> tuple[Template, ...]:
    def name(pattern: str) -> str:  # "title_N1" -> "title_author"
        return "_".join(roles.get(part, part) for part in pattern.split("_"))

    train = [(name(n), _fill(text, roles), weight, False) for n, text, weight in _TRAIN]
    held = [(name(n), _fill(text, roles), 1.0, True) for n, text in _HELD_OUT]
    unique = {n: (text, weight, held_out) for n, text, weight, held_out in train + held if text is not None}
    return tuple(Template(n, text, weight, held_out) for n, (text, weight, held_out) in unique.items())


def _slots(items: Sequence[CatalogueItem]) -> tuple[dict[str, FieldSpec], dict[str, FacetSpec], set[str]]:
    """The slots (title first, then names of people before makers) and their facets; the people slots."""
    taken = {"title"}
    fields: dict[str, FieldSpec] = {"title": FieldSpec(key="title", kind="title")}
    facets: dict[str, FacetSpec] = {"title": FacetSpec(weight=3.0)}
    people: set[str] = set()
    for found in sorted(_found_fields(items), key=lambda f: f.kind == "name" and not f.person):
        slot = _slot_name(found.key, taken)
        fields[slot] = FieldSpec(key=found.key, kind=found.kind, split=found.split)
        facets[slot] = _facet(found, _label(found.key))
        people |= {slot} if found.person else set()
        if found.kind == "year":
            decade = _slot_name("decade", taken)
            fields[decade] = FieldSpec(key=found.key, kind="decade")
            # Without "the nineties": the form "from the {x}" says "the" already.
            facets[decade] = FacetSpec(0.6, forms=("{x}", "{x}", "from the {x}"), spellings=SLOT_DECADES)
    return fields, facets, people


def generic_templates(items: Sequence[CatalogueItem], name: str = "generic") -> QueryTemplates:
    """A query configuration for ``items`` from the fields they have (see the module docstring)."""
    fields, facets, people = _slots(items)
    kinds = {slot: field.kind for slot, field in fields.items() if field.kind != "title"}
    by_kind = {
        kind: [s for s, k in kinds.items() if k == kind]
        for kind in ("name", "category", "year", "decade", "text")
    }
    order = (
        *by_kind["decade"],
        *by_kind["category"],
        "title",
        *by_kind["name"],
        *by_kind["year"],
        *by_kind["text"],
    )
    # A lone facet should single out few items: a title or a person, not a publisher or a category.
    queries = QuerySpec(facets, _OPENERS, ("title", *(s for s in by_kind["name"] if s in people)), order)
    roles = _roles(kinds, people)
    attributes = ("title", *(fields[roles[r]].key for r in ("N1", "Y", "C1") if r in roles))
    index_parts = [(f"{{title}} ({{{roles['Y']}}})", "{title}") if "Y" in roles else ("{title}",)]
    index_parts += [(f"{{{slot}}}",) for slot in (*by_kind["name"], *by_kind["category"])]
    examples = ExampleSpec({}, _templates(roles), attributes, tuple(index_parts))
    logger.info(
        "query templates from the catalogue's fields: %s", ", ".join(f"{s} ({k})" for s, k in kinds.items())
    )
    return QueryTemplates(name, fields, queries, examples)
