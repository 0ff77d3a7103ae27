"""The people a query names in full (``semantic_ids.named_people``), over a few hand-made rows."""

from __future__ import annotations

from typing import Any

import numpy as np

from semantic_ids.lexical import FIELD_GROUPS
from semantic_ids.named_people import NamedPeople

ROWS: list[dict[str, Any]] = [
    {"item_id": "a", "title": "A",
     "fields": {"cast": ["Russell Crowe", "Alan Dale"], "director": "Ridley Scott"}},
    {"item_id": "b", "title": "B", "fields": {"cast": ["Samuel L. Jackson", "Penélope Cruz"], "year": 2004}},
    {"item_id": "c", "title": "C",
     "fields": {"cast": ["Madonna", "Alan Dale"], "writer": "John Logan, Neal Purvis"}},
    {"item_id": "d", "title": "D", "fields": {"production": "Eon Productions, Metro-Goldwyn-Mayer"}},
]  # fmt: skip


def _people() -> NamedPeople:
    return NamedPeople.build(ROWS, FIELD_GROUPS["people"])


def test_a_name_in_full_is_found_among_other_words_and_gives_its_rows() -> None:
    people = _people()
    assert people.named("alan dale small role") == ["alan dale"]
    assert people.share("alan dale small role").tolist() == [1.0, 0.0, 1.0, 0.0]


def test_names_fold_case_accents_and_punctuation() -> None:
    people = _people()
    assert people.named("PENELOPE CRUZ") == ["penelope cruz"]
    assert people.named("samuel l. jackson in the 2000s") == ["samuel l jackson"]
    assert people.named("written by neal purvis") == ["neal purvis"]  # a comma-separated field


def test_a_typod_name_matches_through_a_word_spelt_right() -> None:
    people = _people()
    assert people.named("russel crowe gladiator") == ["russell crowe"]
    assert people.named("rusel krowe") == []  # no word spelt right: not guessed


def test_single_words_and_unknown_names_name_no_one() -> None:
    people = _people()
    assert people.named("madonna") == []  # one word: left to BM25, it may be an ordinary word
    assert people.named("scott") == []  # a surname alone, likewise
    assert people.named("a crime drama from the nineties") == []
    assert not people.share("a crime drama").any()


def test_two_names_each_count_for_half() -> None:
    people = _people()
    share = people.share("russell crowe and samuel l jackson")
    assert np.allclose(share, [0.5, 0.5, 0.0, 0.0])
    assert people.named("alan dale with russell crowe") == ["alan dale", "russell crowe"]
    assert people.share("alan dale with russell crowe").tolist() == [1.0, 0.0, 0.5, 0.0]


def test_a_catalogue_without_people_fields_names_no_one() -> None:
    rows = [{"item_id": "x", "title": "X", "fields": {"year": 1999}}]
    people = NamedPeople.build(rows, FIELD_GROUPS["people"])
    assert len(people) == 0 and people.named("alan dale") == []
    assert people.share("alan dale").tolist() == [0.0]
