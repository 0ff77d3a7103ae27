"""load_catalogue: one transaction that inserts, updates and deletes; idempotent; all or nothing."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from app.db.loader import CatalogueLoadError, load_catalogue
from semantic_ids.ids import IdScheme
from tests.helpers.db_snapshot import items_snapshot, state_snapshot
from tests.helpers.sample_catalogue import make_items


def test_first_load_inserts_every_item(migrated_engine: Engine) -> None:
    items = make_items(6)
    report = load_catalogue(migrated_engine, items, "v1")

    assert (report.inserted, report.updated, report.deleted, report.unchanged) == (6, 0, 0, 0)
    assert report.previous_version is None and report.item_count == 6
    assert items_snapshot(migrated_engine) == [
        (i["item_id"], "-".join(map(str, i["semantic_id"])), i["semantic_id"], i["title"], i["fields"], "v1")
        for i in items
    ]
    state = state_snapshot(migrated_engine)
    assert state is not None and state[1:3] == ("v1", 6)


def test_second_identical_load_changes_nothing(migrated_engine: Engine) -> None:
    load_catalogue(migrated_engine, make_items(6), "v1")
    rows, state = items_snapshot(migrated_engine), state_snapshot(migrated_engine)

    report = load_catalogue(migrated_engine, make_items(6), "v1")

    assert (report.inserted, report.updated, report.deleted, report.unchanged) == (0, 0, 0, 6)
    assert report.previous_version == "v1"
    assert items_snapshot(migrated_engine) == rows
    assert state_snapshot(migrated_engine) == state  # not even loaded_at moves


def test_changed_removed_and_new_items(migrated_engine: Engine) -> None:
    old = make_items(6)
    load_catalogue(migrated_engine, old, "v1")
    new = copy.deepcopy(old[1:])  # tt0000000 leaves the catalogue
    new[0]["title"] = "Film 1, director's cut"
    new[1]["fields"]["year"] = 2001
    new.append({"item_id": "tt9999999", "title": "New film", "fields": {}, "semantic_id": [7, 7, 1]})

    report = load_catalogue(migrated_engine, new, "v2")

    assert (report.inserted, report.updated, report.deleted, report.unchanged) == (1, 2, 1, 3)
    assert report.previous_version == "v1" and report.item_count == 6
    rows = {row[0]: row for row in items_snapshot(migrated_engine)}
    assert "tt0000000" not in rows
    assert rows["tt0000001"][3] == "Film 1, director's cut"
    assert rows["tt0000002"][4]["year"] == 2001
    assert rows["tt9999999"][1] == "7-7-1"
    assert {row[5] for row in rows.values()} == {"v2"}  # unchanged rows carry the new version too
    state = state_snapshot(migrated_engine)
    assert state is not None and state[1:3] == ("v2", 6)


def test_items_may_swap_semantic_ids(migrated_engine: Engine) -> None:
    items = make_items(4)
    load_catalogue(migrated_engine, items, "v1")
    swapped = copy.deepcopy(items)
    swapped[0]["semantic_id"], swapped[1]["semantic_id"] = items[1]["semantic_id"], items[0]["semantic_id"]

    report = load_catalogue(migrated_engine, swapped, "v2")

    assert report.updated == 2
    rows = {row[0]: row for row in items_snapshot(migrated_engine)}
    assert rows["tt0000000"][2] == items[1]["semantic_id"]
    assert rows["tt0000001"][2] == items[0]["semantic_id"]


def _fail_on_insert_of(engine: Engine, item_id: str) -> None:
    """A trigger that makes the database itself reject one row: a failure after the deletes ran."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text(
                "CREATE FUNCTION reject_row() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'rejected %', NEW.item_id; END $$"
            ))  # fmt: skip
            connection.execute(text(
                "CREATE TRIGGER reject_row BEFORE INSERT ON items FOR EACH ROW "
                f"WHEN (NEW.item_id = '{item_id}') EXECUTE FUNCTION reject_row()"
            ))  # fmt: skip
        else:
            connection.execute(text(
                f"CREATE TRIGGER reject_row BEFORE INSERT ON items WHEN NEW.item_id = '{item_id}' "
                "BEGIN SELECT RAISE(ABORT, 'rejected'); END"
            ))  # fmt: skip


def test_a_load_that_fails_midway_leaves_the_previous_catalogue(migrated_engine: Engine) -> None:
    old = make_items(6)
    load_catalogue(migrated_engine, old, "v1")
    rows, state = items_snapshot(migrated_engine), state_snapshot(migrated_engine)
    _fail_on_insert_of(migrated_engine, "tt-poison")
    new = copy.deepcopy(old[2:])  # two deletions
    new[0]["title"] = "changed"  # one update (delete + insert)
    new.append({"item_id": "tt-poison", "title": "Poison", "fields": {}, "semantic_id": [7, 7, 1]})

    with pytest.raises(DBAPIError, match="rejected"):
        load_catalogue(migrated_engine, new, "v2")

    assert items_snapshot(migrated_engine) == rows
    assert state_snapshot(migrated_engine) == state


def _duplicate_semantic_id(items: list[dict[str, Any]]) -> None:
    items[4]["semantic_id"] = list(items[1]["semantic_id"])


def _duplicate_item_id(items: list[dict[str, Any]]) -> None:
    items[3]["item_id"] = items[0]["item_id"]


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (_duplicate_semantic_id, r"row 5: semantic_id 1-0-1 of item 'tt0000004' .* by 'tt0000001'"),
        (_duplicate_item_id, r"row 4: item_id 'tt0000000' already appears on row 1"),
        (lambda items: items[2].pop("title"), r"row 3 \(item 'tt0000002'\): title must be a string"),
        (lambda items: items[2].update(semantic_id="2-0-0"), r"row 3 .*semantic_id must be a list of codes"),
        (lambda items: items[2].update(semantic_id=[2, -1, 0]), r"row 3 .*non-negative integers"),
        (lambda items: items[2].update(semantic_id=[2, 0]), r"row 3: .*has 2 codes, row 1 has 3"),
        (lambda items: items[2].update(item_id=""), r"row 3: item_id must be a non-empty string"),
        (lambda items: items[2]["fields"].update(rating=float("nan")), r"row 3 .*fields are not plain JSON"),
        (lambda items: items[2].update(title="a\x00b"), r"row 3 .*NUL"),
        (lambda items: items.clear(), r"the catalogue is empty"),
    ],
    ids=["dup-semantic-id", "dup-item-id", "no-title", "codes-string", "negative-code", "short-id",
         "empty-item-id", "nan-field", "nul-title", "empty"],
)  # fmt: skip
def test_bad_input_is_refused_before_anything_is_written(
    migrated_engine: Engine, spoil: Any, message: str
) -> None:
    load_catalogue(migrated_engine, make_items(6), "v1")
    rows, state = items_snapshot(migrated_engine), state_snapshot(migrated_engine)
    bad = make_items(6)
    bad[5]["title"] = "would be an update"
    spoil(bad)

    with pytest.raises(CatalogueLoadError, match=message):
        load_catalogue(migrated_engine, bad, "v2")

    assert items_snapshot(migrated_engine) == rows
    assert state_snapshot(migrated_engine) == state


def test_scheme_checks_every_code(migrated_engine: Engine) -> None:
    items = make_items(6)
    with pytest.raises(CatalogueLoadError, match=r"row 5 .*code 1 at level 1 is out of range"):
        load_catalogue(migrated_engine, items, "v1", scheme=IdScheme((4, 1, 2)))
    assert load_catalogue(migrated_engine, items, "v1", scheme=IdScheme((4, 2, 2))).inserted == 6
