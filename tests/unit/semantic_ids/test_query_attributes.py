"""Structured attributes read from queries in four languages, and which rows meet them."""

from __future__ import annotations

import numpy as np
import pytest

from semantic_ids.query_attributes import AttributeFields, RowAttributes, fold
from tests.helpers.tiny_catalogue import tiny_items

ITEMS = tiny_items()  # years 1975-2013, genres, countries, languages, ratings


@pytest.fixture(scope="module")
def attributes() -> RowAttributes:
    return RowAttributes.build(ITEMS)


def _years(attributes: RowAttributes, query: str) -> list[tuple[int, int] | None]:
    return [c.years for c in attributes.parse(query).constraints if c.kind == "year"]


@pytest.mark.parametrize(
    "query",
    ["the nineties", "90s", "a 1990s film", "from the '90s", "années 90", "les années quatre-vingt-dix",
     "los noventa", "de los años 90", "die 90er", "Neunziger Jahre", "aus den 90ern"],
)  # fmt: skip
def test_a_decade_in_digits_or_words_in_four_languages_is_one_constraint(
    attributes: RowAttributes, query: str
) -> None:
    assert _years(attributes, query) == [(1990, 1999)]


def test_years_and_ranges(attributes: RowAttributes) -> None:
    assert _years(attributes, "a thriller from 2012") == [(2012, 2012)]
    assert _years(attributes, "films after 2005") == [(2005, 2039)]
    assert _years(attributes, "avant 1990") == [(1880, 1989)]
    assert _years(attributes, "between 1980 and 1985") == [(1980, 1985)]
    assert _years(attributes, "die 2010er") == [(2010, 2019)]
    assert _years(attributes, "the two-thousands") == [(2000, 2009)]


@pytest.mark.parametrize(
    ("query", "genre"),
    [("une comédie", "Comedy"), ("comedia", "Comedy"), ("Komödie", "Comedy"), ("something funny", "Comedy"),
     ("película de terror", "Horror"), ("ein Krimi", "Crime"), ("science-fiction", "Sci-Fi")],
)  # fmt: skip
def test_genres_and_their_synonyms_in_four_languages(
    attributes: RowAttributes, query: str, genre: str
) -> None:
    (constraint,) = attributes.parse(query).constraints
    assert constraint.kind == "genre" and constraint.values == (genre,)


def test_a_nationality_is_a_country_or_a_language(attributes: RowAttributes) -> None:
    (constraint,) = attributes.parse("a Japanese film").constraints
    met = attributes.mask(constraint)
    expected = [
        item["fields"]["country"] == "Japan" or item["fields"]["language"] == "Japanese" for item in ITEMS
    ]
    assert met.tolist() == expected and any(expected)


def test_a_rating_needs_its_rated_form_not_a_lone_letter(attributes: RowAttributes) -> None:
    assert [c.values for c in attributes.parse("an R-rated crime film").constraints] == [("R",), ("Crime",)]
    assert attributes.parse("r").constraints == ()


def test_satisfied_is_the_fraction_met_and_a_title_naming_the_words_meets_them(
    attributes: RowAttributes,
) -> None:
    parsed = attributes.parse("a comedy from the eighties")
    met = attributes.satisfied(parsed)
    for item, value in zip(ITEMS, met, strict=True):
        fields = item["fields"]
        expected = ("Comedy" in fields["genres"]) + (1980 <= fields["year"] <= 1989)
        assert value == pytest.approx(expected / 2)
    assert attributes.satisfied(attributes.parse("Alien")).tolist() == [1.0] * len(ITEMS)  # no constraint
    war = RowAttributes.build(
        [{"item_id": "1", "title": "War of the Worlds", "fields": {"genres": ["Sci-Fi"]}}]
    )
    assert war.satisfied(war.parse("war of the worlds")).tolist() == [1.0]


def test_folding_makes_accents_and_case_one() -> None:
    assert fold("Penélope CRUZ") == fold("penelope cruz") == "penelope cruz"
    assert fold("Sci-Fi") == "sci fi" and fold("Straße") == "strasse"


def test_a_catalogue_without_such_fields_has_no_constraints() -> None:
    books = [{"item_id": "b1", "title": "Dune", "fields": {"author": "Frank Herbert"}}]
    attributes = RowAttributes.build(books)
    assert attributes.fields == AttributeFields()
    assert attributes.parse("a comedy from the nineties").constraints == ()
    assert np.array_equal(attributes.satisfied(attributes.parse("90s")), [1.0])


def test_a_book_catalogue_keeps_its_own_category_values() -> None:
    books = [
        {"item_id": "b1", "title": "Dune", "fields": {"year": 1965, "categories": ["Science Fiction"]}},
        {"item_id": "b2", "title": "Emma", "fields": {"year": 1815, "categories": ["Classics"]}},
    ]
    attributes = RowAttributes.build(books)
    assert attributes.fields.genre == "categories"
    assert attributes.satisfied(attributes.parse("classics")).tolist() == [0.0, 1.0]
    assert attributes.satisfied(attributes.parse("science fiction from the sixties")).tolist() == [1.0, 0.0]


def test_the_words_of_a_kept_name_are_read_as_no_attribute(attributes: RowAttributes) -> None:
    """ "Frances" alone reads as France; in a name the query holds (``keep``), it is part of the name."""
    unkept = attributes.parse("frances mcdormand crime")
    assert {c.kind for c in unkept.constraints} == {"country", "genre"}
    kept = attributes.parse("Frances McDormand crime", keep=["frances mcdormand"])
    assert [(c.kind, c.values) for c in kept.constraints] == [("genre", ("Crime",))]
    assert kept.rest == "frances mcdormand"  # the name stays for BM25
    both = attributes.parse("frances mcdormand in a french film", keep=["frances mcdormand"])
    assert {c.kind for c in both.constraints} == {"country"}


@pytest.mark.parametrize(
    ("query", "years"),
    [("mid-2000s horror", (2003, 2006)), ("the early 90s", (1990, 1993)),
     ("the late nineties", (1996, 1999)), ("fin des années 80", (1986, 1989)),
     ("a finales de los 90", (1996, 1999)), ("Mitte der 90er", (1993, 1996)),
     ("aus den frühen 90ern", (1990, 1993)), ("early eighties sci-fi", (1980, 1983))],
)  # fmt: skip
def test_the_part_of_a_decade_asked_for_narrows_its_years(
    attributes: RowAttributes, query: str, years: tuple[int, int]
) -> None:
    assert _years(attributes, query) == [years]


def test_a_part_word_before_anything_but_a_decade_stays_a_word(attributes: RowAttributes) -> None:
    parsed = attributes.parse("late comedy from the 90s")
    assert _years(attributes, "late comedy from the 90s") == [(1990, 1999)]
    assert "late" in parsed.rest.split()
    assert [c.span for c in parsed.constraints if c.kind == "genre"] == ["comedy"]


def test_german_decades_in_the_dative_and_aussie(attributes: RowAttributes) -> None:
    assert _years(attributes, "Actionfilm aus den Neunzigern") == [(1990, 1999)]
    assert [c.values for c in attributes.parse("aussie comedy").constraints if c.kind == "country"] == [
        ("Australia",)
    ]
