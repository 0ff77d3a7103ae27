"""Query configurations: the films' file reproduces the film queries byte for byte, files are checked
with one-line errors, and a catalogue without a file gets templates from its own fields."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from semantic_ids.ids import SemanticId
from tests.helpers.book_catalogue import book_rows
from tests.helpers.tiny_catalogue import tiny_catalogue, tiny_items
from training.data.catalogue import load_films
from training.data.items import CatalogueItem
from training.llm import query_generator
from training.llm.examples import ExampleConfig, build_examples
from training.llm.generic_templates import generic_templates
from training.llm.held_out_synonyms import synonym_queries
from training.llm.query_generator import QueryGenerator
from training.llm.template_files import (
    check_against,
    choose_templates,
    films_templates,
    load_templates,
    templates_from_dict,
    to_dict,
)
from training.llm.template_spec import TemplateError

# Computed with the code before the films' phrasing moved into templates/films.yaml (commit dfe7c6c):
# sha256 of json.dumps(rows, sort_keys=True, ensure_ascii=False). The films' pins were taken again when
# the import began to list a film's cast by prominence (training.data.catalogue), which changes them.
PINNED = {
    "tiny_queries": "abf5969ae626bbb765546e64cf31a6e031e8181c608c8bc20ec4a6484f3d0ffa",
    "tiny_epoch1": "32d9c9733fa6cc27546b789d6cc1e3f6bdc09049c7fd9c0a0c21195cddfd63cf",
    "tiny_examples": "8932440fc5c0100fd8a645daa78c5f70c5dcfa23ea1138a9a1d6b8e1d6b2f3de",
    "tiny_examples_index": "02a951cf29377ff69a9d357822d1ccd718f286ab8dc703c3dd4ccebd38ddca2b",
    "films_queries": "8fabbf65fafa57271e586a6d1670c32e69347581d4c279f272739d3997e9f4c1",
    "films_examples_demo": "7ee1b9ff6087806a469880ec56b2c03ed411c11cab4f738f2fa9f90c51a8d188",
    "films_knobs": "9c1dedfde09809b366b20929d0b510f821a5dfbb84317918f1896c6145c55478",
}
FILM_WORDS = ("directed by", "starring", "movie", "film", "stars in")


def _sha(rows: Any) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _with_ids(items: list[CatalogueItem]) -> list[CatalogueItem]:
    return [item.with_id(SemanticId.from_codes([i % 4, i // 4 % 4, i // 16])) for i, item in enumerate(items)]


def test_the_tiny_films_get_todays_queries_and_examples_byte_for_byte() -> None:
    items = tiny_catalogue()
    assert _sha([e["query"] for e in QueryGenerator(items, 8, 0).epoch(0)]) == PINNED["tiny_queries"]
    assert _sha(QueryGenerator(items, 8, 0).epoch(1)) == PINNED["tiny_epoch1"]
    assert _sha(build_examples(items, ExampleConfig())) == PINNED["tiny_examples"]
    indexed = ExampleConfig(seed=3, index_examples_per_item=1, valid_queries_per_item=2)
    assert _sha(build_examples(items, indexed)) == PINNED["tiny_examples_index"]


def test_generated_queries_list_every_item_that_fits_their_facets() -> None:
    items = [
        item.with_id(SemanticId.from_codes([i % 32, i // 32 % 32, i // 1024]))
        for i, item in enumerate(load_films(limit=300))
    ]
    plain = QueryGenerator(items, 4, 0).epoch(0)
    matched = QueryGenerator(items, 4, 0).epoch(0, with_matching=True)
    assert [e["query"] for e in matched] == [e["query"] for e in plain]  # recording draws no numbers
    by_id = {item.item_id: item for item in items}
    cast_of = {item.item_id: set(item.fields.get("cast") or []) for item in items}
    assert all(e["item_id"] in e["matching_item_ids"] for e in matched)
    assert any(len(e["matching_item_ids"]) > 10 for e in matched)  # a lone genre or decade, say
    named = 0
    for example in matched:
        director = str(by_id[example["item_id"]].fields.get("director", ""))
        # A director billed in their own cast (Michael Bay in Transformers) is asked for as the director.
        names = [
            name
            for name in cast_of[example["item_id"]]
            if name.lower() in example["query"].lower() and name not in director
        ]
        if len(example["matching_item_ids"]) > 1 and names and example["query"].lower() == names[0].lower():
            # a query that is a cast name alone fits exactly the films that list that name
            named += 1
            assert set(example["matching_item_ids"]) == {i for i, cast in cast_of.items() if names[0] in cast}
    assert named > 0 and len(by_id) == 300


def test_the_demo_films_get_todays_queries_and_examples_and_the_knobs_still_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    items = [
        item.with_id(SemanticId.from_codes([i % 32, i // 32 % 32, i // 1024]))
        for i, item in enumerate(load_films(limit=1000))
    ]
    assert _sha([e["query"] for e in QueryGenerator(items, 8, 0).epoch(0)]) == PINNED["films_queries"]
    demo = ExampleConfig(train_queries_per_item=12, attribute_examples_per_item=1)
    assert _sha(build_examples(items, demo)) == PINNED["films_examples_demo"]
    monkeypatch.setattr(query_generator, "MULTI_CAST_RATE", 0.5)
    monkeypatch.setattr(query_generator, "CAST_WEIGHT_POWER", 1.0)
    monkeypatch.setattr(query_generator, "TITLE_TYPO_RATE", 0.9)
    assert _sha(QueryGenerator(items, 8, 0).epoch(0)) == PINNED["films_knobs"]
    monkeypatch.setattr(query_generator, "title_form", lambda title, rng: "TITLE")
    assert any("TITLE" in e["query"].upper() for e in QueryGenerator(items[:20], 4, 0).epoch(0))


def _cast_mentions(examples: list[dict[str, Any]], items: list[CatalogueItem]) -> tuple[int, int]:
    """(mentions of the first six listed cast names, mentions of the others) in the queries."""
    cast = {item.item_id: list(item.fields.get("cast") or []) for item in items}
    shown = hidden = 0
    for example in examples:
        names = cast[example["item_id"]]
        query = example["query"].lower()
        shown += sum(name.lower() in query for name in names[:6])
        hidden += sum(name.lower() in query for name in names[6:])
    return shown, hidden


def test_the_shown_name_rate_draws_the_cast_the_item_text_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    films = [item for item in load_films(limit=300) if len(item.fields.get("cast") or []) > 12]
    items = [item.with_id(SemanticId.from_codes([i % 32, i // 32, 0])) for i, item in enumerate(films)]
    assert films_templates().queries.facets["cast"].shown == 6
    shown, hidden = _cast_mentions(QueryGenerator(items, 8, 0).epoch(0), items)
    # By popularity alone the names drawn reach well beyond the six the text shows (the six are the
    # actors of most films, whom popularity favours too).
    assert 2 * hidden > shown
    monkeypatch.setattr(query_generator, "SHOWN_NAME_RATE", 1.0)
    shown, hidden = _cast_mentions(QueryGenerator(items, 8, 0).epoch(0), items)
    assert shown > 10 * max(1, hidden)  # others: a director who acts, a name inside a title


def test_the_films_file_round_trips_through_its_json_form(tmp_path: Path) -> None:
    films = films_templates()
    path = tmp_path / "films.json"
    path.write_text(json.dumps(to_dict(films)))
    assert load_templates(path) == films
    assert [t.name for t in films.examples.templates if t.held_out][:2] == [
        "v_title_looking",
        "v_title_watch",
    ]


GOOD: dict[str, Any] = {
    "fields": {"title": {"kind": "title"}, "author": {"kind": "name"}},
    "examples": {"train": {"by": "{title} by {author}"}, "held_out": {"v_looking": "looking for {title}"}},
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"examples": {**GOOD["examples"], "held_out": {"v": "{autor}'s books"}}},
         "template 'v' names unknown field 'autor' (fields: title, author)"),
        ({"fields": {**GOOD["fields"], "year": {"kind": "date"}}}, "kind must be one of title, name"),
        ({"fields": {**GOOD["fields"], "year": {"kind": "year", "spelling": 1}}},
         "unknown option 'spelling'"),
        ({"queries": {"facets": {"author": {"forms": ["by someone"]}}}}, "must name the value once, as {x}"),
        ({"queries": {"facets": {"author": {"pick": "pool"}}}}, "pick must be one of any, first"),
        ({"queries": {"lone": ["isbn"]}}, "queries.lone: 'isbn' is not one of the facets"),
        ({"examples": {"train": GOOD["examples"]["train"]}}, "needs templates under both train and held_out"),
        ({"shelves": {}}, "unknown section 'shelves'"),
        ({"queries": {"facets": {"author": {"weight": "heavy"}}}}, "weight must be float, not 'heavy'"),
        ({"queries": {"facets": {"author": {"weight": -1}}}}, "weight must be float, not -1"),
        ({"examples": {**GOOD["examples"], "slots": {"author": {"pool": 2.5}}}}, "pool must be int"),
        ({"fields": {**GOOD["fields"], "decade": {"kind": "decade", "key": "year", "words": {"90s": "x"}}}},
         "the keys are decades"),
        ({"fields": {**GOOD["fields"], "genre": {"kind": "category", "synonyms": {"Horror": ["scary"]},
                                                 "held_out_synonyms": {"Horror": ["creepy", "Scary"]}}}},
         "held_out_synonyms.Horror: 'Scary' is a training synonym too"),
        ({"fields": {**GOOD["fields"], "author": {"kind": "name", "held_out_synonyms": {"x": ["y"]}}}},
         "held_out_synonyms are for a category field, not name"),
    ],
)  # fmt: skip
def test_a_bad_file_is_one_line_naming_the_problem(change: dict[str, Any], message: str) -> None:
    with pytest.raises(TemplateError, match=r"^books\.yaml") as raised:
        templates_from_dict({**GOOD, **change}, "books.yaml")
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_file_is_checked_against_the_catalogue(tmp_path: Path) -> None:
    items = [CatalogueItem("b1", "Dune", {"writer": "Frank Herbert"})]
    path = tmp_path / "books.yaml"
    path.write_text(
        "fields:\n  title: {kind: title}\n  author: {kind: name}\n"
        "examples:\n  train: {by: '{title} by {author}'}\n  held_out: {v_looking: 'looking for {title}'}\n"
    )
    with pytest.raises(
        TemplateError, match="field 'author' reads 'author', which no item of the catalogue has"
    ):
        choose_templates(path, items, films=False, name="books")
    path.write_text(path.read_text().replace("{kind: name}", "{kind: name, key: writer}"))
    assert choose_templates(path, items, films=False, name="books").fields["author"].key == "writer"
    with pytest.raises(TemplateError, match="no such query templates file"):
        choose_templates(tmp_path / "absent.yaml", items, films=False, name="books")
    (tmp_path / "broken.yaml").write_text("fields: [unclosed")
    with pytest.raises(TemplateError, match="not a YAML or JSON file"):
        load_templates(tmp_path / "broken.yaml")
    check_against(films_templates(), tiny_catalogue(), "films.yaml")  # every film field is there


@pytest.fixture(scope="module")
def books() -> list[CatalogueItem]:
    return _with_ids([CatalogueItem.from_dict(row) for row in book_rows()])


def test_generic_templates_come_from_the_fields_that_exist(books: list[CatalogueItem]) -> None:
    templates = generic_templates(books, "books")
    kinds = {name: field.kind for name, field in templates.fields.items()}
    assert kinds == {"title": "title", "author": "name", "categories": "category", "year": "year",
                     "decade": "decade", "publisher": "name", "description": "text"}  # fmt: skip
    # Identifiers, page counts and flags are not what people type.
    assert not {"isbn", "pages", "in_stock"} & {f.key for f in templates.fields.values()}
    assert templates.queries.lone == ("title", "author")  # a publisher alone fits too many books
    held_out = [t for t in templates.examples.templates if t.held_out]
    assert len(held_out) >= 6 and all(t.name.startswith("v_") for t in held_out)
    assert templates_from_dict(json.loads(json.dumps(to_dict(templates))), "x") == templates


def test_generic_queries_name_the_catalogues_own_fields_and_no_film_words(books: list[CatalogueItem]) -> None:
    templates = choose_templates(None, books, films=False, name="books")
    generated = [e["query"].lower() for e in QueryGenerator(books, 6, 0, templates).epoch(0)]
    examples = build_examples(books, ExampleConfig(valid_queries_per_item=2), templates)
    written = [e["query"].lower() for e in examples if e["kind"] == "query"]
    for queries in (generated, written):
        assert not [q for q in queries if any(word in q for word in FILM_WORDS)]
        assert sum("agatha christie" in q or "christie" in q for q in queries) >= 3
        assert any("science fiction" in q for q in queries)
        assert any(word in q for q in queries for word in ("1960s", "60s", "sixties"))
    valid = [e for e in examples if e["split"] == "valid"]
    held_out = {t.name for t in templates.examples.templates if t.held_out}
    assert {e["template"] for e in valid} <= held_out and len({e["template"] for e in valid}) >= 5
    trained = {e["query"].lower() for e in examples if e["split"] == "train" and "query" in e} | set(
        generated
    )
    assert not [e["query"] for e in valid if e["query"].lower() in trained]
    # "everything from Agatha Christie" is relevant to all her books, and only to hers.
    by_author = {book.item_id: book.fields["author"] for book in books}
    about_authors = [
        e for e in valid if e["template"] in ("v_author_only", "v_author_decade", "v_author_year")
    ]
    assert about_authors
    for example in about_authors:
        authors = {by_author[item_id] for item_id in example["matching_item_ids"]}
        assert (
            authors == {by_author[example["item_id"]]} and example["item_id"] in example["matching_item_ids"]
        )
    only = [e for e in about_authors if e["template"] == "v_author_only"]
    assert all(
        len(e["matching_item_ids"]) == list(by_author.values()).count(by_author[e["item_id"]]) for e in only
    )


def test_a_catalogue_with_only_titles_still_gets_queries() -> None:
    items = _with_ids([CatalogueItem(f"p{i}", f"Product number {i}") for i in range(6)])
    templates = generic_templates(items)
    queries = QueryGenerator(items, 5, 0, templates).epoch(0)
    assert len(queries) == 30 and all(e["query"] for e in queries)
    examples = build_examples(items, ExampleConfig(), templates)
    assert {e["template"] for e in examples if e["split"] == "valid"} == {"v_title_looking"}


def test_the_readme_example_is_a_file_that_works(books: list[CatalogueItem], tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Your own catalogue") :]
    example = section[section.index("```yaml\n") + 8 : section.index("```", section.index("```yaml\n") + 8)]
    (tmp_path / "books.yaml").write_text(example)
    templates = choose_templates(tmp_path / "books.yaml", books, films=False, name="books")
    generated = [e["query"].lower() for e in QueryGenerator(books, 4, 0, templates).epoch(0)]
    assert any("written by" in q for q in generated) and any("sci-fi" in q for q in generated)
    valid = [e for e in build_examples(books, ExampleConfig(), templates) if e["split"] == "valid"]
    assert {e["template"] for e in valid} == {"v_looking", "v_author_genre"}


def test_the_framing_words_come_from_training_phrasing_never_from_held_out_templates_or_values() -> None:
    films = films_templates()
    words = " ".join(films.framing_text()).lower().split()
    assert {"movie", "starring", "show", "directed"} <= set(words)
    held_out = {"looking", "tonight", "featuring", "alongside", "recommend"}  # held-out template words
    assert not held_out & set(words)
    assert not any("{" in text or "}" in text for text in films.framing_text())


def test_held_out_synonyms_name_every_item_of_their_value_and_never_a_training_word() -> None:
    rows = tiny_items()
    genre = {
        "kind": "category", "key": "genres", "synonyms": {"Horror": ["scary"], "Comedy": ["funny"]},
        "held_out_synonyms": {"Horror": ["terrifying", "creepy tales"], "Comedy": ["humorous"],
                              "Opera": ["arias"]},
    }  # fmt: skip
    spec = {**GOOD, "queries": {"openers": ["", "a ", "find "]}, "fields": {**GOOD["fields"], "genre": genre}}
    templates = templates_from_dict(spec, "books.yaml")
    queries = synonym_queries(templates, rows, seed=0)
    assert queries == synonym_queries(templates, rows, seed=0)  # seeded
    horror = tuple(i for i, row in enumerate(rows) if "Horror" in row["fields"]["genres"])
    comedy = tuple(i for i, row in enumerate(rows) if "Comedy" in row["fields"]["genres"])
    assert horror and comedy and set(horror).isdisjoint(comedy)
    # two of the openers that are words a synonym; no query for a value no item has (Opera)
    assert len(queries) == 2 * 3 and len({query for query, _ in queries}) == 6
    assert all(query.startswith(("a ", "find ")) for query, _ in queries)
    for query, relevant in queries:
        assert "scary" not in query and "funny" not in query
        assert relevant == (comedy if "humorous" in query else horror)
    # the films' own file holds some out for every genre it spells
    genre = films_templates().fields["genre"]
    assert genre.held_out_synonyms is not None and set(genre.held_out_synonyms) == set(genre.synonyms or {})
