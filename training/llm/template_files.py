"""Reading, checking and writing query configurations (the shapes are in ``template_spec.py``).

A configuration file is YAML or JSON (JSON is YAML, so one reader does both); the format is in
README.md, "Your own catalogue", and ``templates/films.yaml`` is a complete example. Options left out
take their defaults, so a small file is enough. Everything is checked when the file is read, and
against the catalogue before any stage writes: a wrong option, a template naming a slot that is not
defined, or a slot reading a field no item has is a ``TemplateError`` of one line.

``to_dict`` writes the same format back, every option spelt out: the run folder keeps the
configuration its examples were made with (``query_templates.json``), a starting point for a file of
one's own.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from training.data.items import CatalogueItem
from training.llm.generic_templates import generic_templates
from training.llm.template_spec import (
    KINDS,
    QUERY_PICKS,
    SLOT_PICKS,
    ExampleSpec,
    FacetSpec,
    FieldSpec,
    QuerySpec,
    QueryTemplates,
    SlotSpec,
    Template,
    TemplateError,
    placeholders,
)

_SECTIONS = ("name", "fields", "queries", "examples")


def _mapping(raw: Any, where: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise TemplateError(f"{where}: expected a mapping, got {type(raw).__name__}")
    return raw


def _checked(option: dataclasses.Field[Any], value: Any, where: str) -> Any:
    """``value`` if it has the type of the option's default (lists become tuples of strings)."""
    default = option.default
    if isinstance(value, Mapping) or (value is None and default is None):
        return value  # mappings are read by the callers; None where None is the default
    if isinstance(default, bool):
        fits = isinstance(value, bool)
    elif isinstance(default, int | float):
        fits = isinstance(value, type(default) | int) and not isinstance(value, bool) and value >= 0
    elif default is None or isinstance(default, tuple):
        fits = isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value)
        value = tuple(str(v) for v in value) if fits else value
    else:
        fits = isinstance(value, str)
    if not fits:
        wanted = "a list" if default is None else type(default).__name__
        raise TemplateError(f"{where}: {option.name} must be {wanted}, not {value!r}")
    return value


def _options(cls: type[Any], raw: Any, where: str, fixed: Mapping[str, Any] | None = None) -> Any:
    """``cls`` from a mapping of its options: unknown options and values of the wrong type are refused."""
    options = dict(_mapping(raw, where))
    known = {f.name: f for f in dataclasses.fields(cls) if f.name not in (fixed or {})}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TemplateError(f"{where}: unknown option {unknown[0]!r} (options: {', '.join(sorted(known))})")
    options = {key: _checked(known[key], value, where) for key, value in options.items()}
    try:
        return cls(**options, **(fixed or {}))
    except TypeError as error:
        raise TemplateError(f"{where}: {error}") from None


def _check_forms(forms: Sequence[str] | None, where: str) -> None:
    for form in forms or ():
        if placeholders(form) != ("x",):
            raise TemplateError(f"{where}: the form {form!r} must name the value once, as {{x}}")


def _field(name: str, raw: Any, where: str) -> FieldSpec:
    options = dict(_mapping(raw, where))
    options.setdefault("key", name)
    for option in ("synonyms", "held_out_synonyms"):
        if options.get(option) is not None:
            words = _mapping(options[option], f"{where}.{option}")
            options[option] = {str(k): _words(v, f"{where}.{option}.{k}") for k, v in words.items()}
    if options.get("words") is not None:
        words = _mapping(options["words"], f"{where}.words")
        if not all(str(k).isdigit() for k in words):
            raise TemplateError(f"{where}.words: the keys are decades, such as 1990")
        options["words"] = {int(k): str(v) for k, v in words.items()}
    field: FieldSpec = _options(FieldSpec, options, where)
    if field.kind not in KINDS:
        raise TemplateError(f"{where}: kind must be one of {', '.join(KINDS)}, got {field.kind!r}")
    if field.held_out_synonyms is not None:
        if field.kind != "category":
            raise TemplateError(f"{where}: held_out_synonyms are for a category field, not {field.kind}")
        trained = {word.lower() for spelled in (field.synonyms or {}).values() for word in spelled}
        for value, held_out in field.held_out_synonyms.items():
            both = sorted(word for word in held_out if word.lower() in trained)
            if both:
                raise TemplateError(
                    f"{where}.held_out_synonyms.{value}: {both[0]!r} is a training synonym too"
                )
    return field


def _words(raw: Any, where: str) -> tuple[str, ...]:
    if isinstance(raw, str):
        return (raw,)
    if not isinstance(raw, list) or not raw:
        raise TemplateError(f"{where}: expected a list of words")
    return tuple(str(word) for word in raw)


def _facet(raw: Any, where: str) -> FacetSpec:
    facet: FacetSpec = _options(FacetSpec, raw, where)
    if facet.pick not in QUERY_PICKS:
        raise TemplateError(f"{where}: pick must be one of {', '.join(QUERY_PICKS)}, got {facet.pick!r}")
    if facet.shown < 0:
        raise TemplateError(f"{where}: shown must be 0 or more, got {facet.shown}")
    _check_forms(facet.forms, where)
    _check_forms(facet.multi_forms, where)
    return facet


def _slot(raw: Any, where: str) -> SlotSpec:
    slot: SlotSpec = _options(SlotSpec, raw, where)
    if slot.pick not in SLOT_PICKS:
        raise TemplateError(f"{where}: pick must be one of {', '.join(SLOT_PICKS)}, got {slot.pick!r}")
    _check_forms(slot.forms, where)
    return slot


def _queries(raw: Any, fields: Mapping[str, FieldSpec], where: str) -> QuerySpec:
    options = dict(_mapping(raw, where))
    facets_raw = _mapping(options.pop("facets", None), f"{where}.facets") or dict.fromkeys(fields)
    facets = {name: _facet(value, f"{where}.facets.{name}") for name, value in facets_raw.items()}
    spec: QuerySpec = _options(QuerySpec, options, where, {"facets": facets})
    if not spec.order:
        spec = dataclasses.replace(spec, order=tuple(facets))
    for key in ("lone", "order"):
        unknown = [name for name in getattr(spec, key) if name not in facets]
        if unknown:
            raise TemplateError(f"{where}.{key}: {unknown[0]!r} is not one of the facets")
    if set(spec.order) != set(facets):
        missing = sorted(set(facets) - set(spec.order))
        raise TemplateError(f"{where}.order: leaves out the facet {missing[0]!r}")
    return spec


def _templates(raw: Any, held_out: bool, where: str) -> list[Template]:
    templates = []
    for name, value in _mapping(raw, where).items():
        options = {"text": value} if isinstance(value, str) else dict(_mapping(value, f"{where}.{name}"))
        templates.append(_options(Template, options, f"{where}.{name}", {"name": name, "held_out": held_out}))
    return templates


def _examples(raw: Any, where: str) -> ExampleSpec:
    options = dict(_mapping(raw, where))
    slots_raw = _mapping(options.pop("slots", None), f"{where}.slots")
    slots = {name: _slot(value, f"{where}.slots.{name}") for name, value in slots_raw.items()}
    train = _templates(options.pop("train", None), False, f"{where}.train")
    held_out = _templates(options.pop("held_out", None), True, f"{where}.held_out")
    if not train or not held_out:
        raise TemplateError(f"{where}: needs templates under both train and held_out")
    twice = sorted({t.name for t in train} & {t.name for t in held_out})
    if twice:
        raise TemplateError(f"{where}: {twice[0]!r} is both a training and a held-out template")
    index = tuple(
        (part,) if isinstance(part, str) else tuple(map(str, part)) for part in options.pop("index_text", [])
    )
    fixed = {"slots": slots, "templates": (*train, *held_out)}
    spec: ExampleSpec = _options(ExampleSpec, options, where, fixed)
    return dataclasses.replace(spec, index_text=index or spec.index_text)


def _check_slots(templates: QueryTemplates, where: str) -> None:
    """Every slot a template, a facet or the index text names is defined, and there is one title slot."""
    fields = templates.fields
    if [f.kind for f in fields.values()].count("title") != 1:
        raise TemplateError(f"{where}.fields: needs exactly one slot of kind title")
    named = [(f"template {t.name!r}", t.slots) for t in templates.examples.templates]
    named += [
        ("queries.facets", tuple(templates.queries.facets)),
        ("examples.slots", tuple(templates.examples.slots)),
    ]
    named += [("examples.index_text", placeholders(" ".join(p))) for p in templates.examples.index_text]
    for what, slots in named:
        unknown = [slot for slot in slots if slot not in fields]
        if unknown:
            raise TemplateError(
                f"{where}: {what} names unknown field {unknown[0]!r} (fields: {', '.join(fields)})"
            )


def templates_from_dict(raw: Any, where: str) -> QueryTemplates:
    """A configuration from its file form (a parsed YAML or JSON document); ``where`` names it in errors."""
    document = _mapping(raw, where)
    unknown = sorted(set(document) - set(_SECTIONS))
    if unknown:
        raise TemplateError(f"{where}: unknown section {unknown[0]!r} (sections: {', '.join(_SECTIONS)})")
    fields_raw = _mapping(document.get("fields"), f"{where}.fields")
    fields = {
        str(name): _field(str(name), value, f"{where}.fields.{name}") for name, value in fields_raw.items()
    }
    templates = QueryTemplates(
        name=str(document.get("name", Path(where).stem)),
        fields=fields,
        queries=_queries(document.get("queries"), fields, f"{where}.queries"),
        examples=_examples(document.get("examples"), f"{where}.examples"),
    )
    _check_slots(templates, where)
    return templates


def load_templates(path: Path) -> QueryTemplates:
    if not path.is_file():
        raise TemplateError(f"{path}: no such query templates file")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise TemplateError(f"{path}: not a YAML or JSON file ({' '.join(str(error).split())})") from None
    return templates_from_dict(document, str(path))


@cache
def films_templates() -> QueryTemplates:
    """The default film catalogue's configuration, shipped with the package (read once)."""
    resource = importlib.resources.files("training.llm").joinpath("templates/films.yaml")
    return templates_from_dict(yaml.safe_load(resource.read_text(encoding="utf-8")), "films.yaml")


def check_against(templates: QueryTemplates, items: Sequence[CatalogueItem], where: str) -> None:
    """Every field the configuration reads is a field of at least one item (a typo otherwise)."""
    present = {key for item in items for key in item.fields}
    for name, field in templates.fields.items():
        if field.kind != "title" and field.key not in present:
            raise TemplateError(
                f"{where}: field {name!r} reads {field.key!r}, which no item of the catalogue has "
                f"(its fields: {', '.join(sorted(present)) or 'none besides item_id and title'})"
            )


def choose_templates(
    path: Path | None, items: Sequence[CatalogueItem], *, films: bool, name: str
) -> QueryTemplates:
    """The file at ``path`` when there is one (checked against ``items``); else the films' for the
    default film catalogue and one built from the fields of any other."""
    if path is not None:
        templates = load_templates(path)
        check_against(templates, items, str(path))
        return templates
    return films_templates() if films else generic_templates(items, name)


def _changed(spec: Any, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """A spec's options that differ from their defaults, JSON-ready (tuples as lists)."""
    options = {}
    for option in dataclasses.fields(spec):
        value = getattr(spec, option.name)
        if option.name in leave_out or value == option.default:
            continue
        if isinstance(value, Mapping):
            value = {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
        options[option.name] = list(value) if isinstance(value, tuple) else value
    return options


def to_dict(templates: QueryTemplates) -> dict[str, Any]:
    """The file form of a configuration (options left at their defaults left out), JSON-ready."""
    examples = templates.examples

    def template(t: Template) -> Any:
        return t.text if t.weight == 1.0 else {"text": t.text, "weight": t.weight}

    return {
        "name": templates.name,
        "fields": {
            name: _changed(field, ("key",) if field.key == name else ()) | {"kind": field.kind}
            for name, field in templates.fields.items()
        },
        "queries": {
            **_changed(templates.queries, ("facets",)),
            "facets": {name: _changed(facet) for name, facet in templates.queries.facets.items()},
        },
        "examples": {
            "slots": {name: _changed(slot) for name, slot in examples.slots.items()},
            "train": {t.name: template(t) for t in examples.templates if not t.held_out},
            "held_out": {t.name: template(t) for t in examples.templates if t.held_out},
            "attributes": list(examples.attributes),
            "index_text": [list(part) for part in examples.index_text],
        },
    }
