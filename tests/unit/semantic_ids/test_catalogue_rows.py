"""A bundle catalogue held as its JSON lines: the rows read back as the file's, the columns a load reads
come without parsing again, and a row read is the reader's own copy."""

from __future__ import annotations

import json
from pathlib import Path

from semantic_ids.bundle import CATALOGUE, CatalogueRows, read_catalogue, row_item_ids, row_semantic_ids
from tests.helpers.tiny_catalogue import tiny_items


def test_rows_read_back_as_the_file_holds_them(tmp_path: Path) -> None:
    rows = [{**row, "semantic_id": [i % 4, i // 4, 0]} for i, row in enumerate(tiny_items())]
    rows[3]["title"] = "Amélie, « Le fabuleux destin »"  # not ASCII, and a blank line below
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    (tmp_path / CATALOGUE).write_text("\n".join([*lines[:5], "", *lines[5:]]) + "\n", encoding="utf-8")
    held = CatalogueRows.read(tmp_path)
    assert len(held) == len(rows) and list(held) == rows == list(read_catalogue(tmp_path))
    assert held[3] == rows[3] and held[-1] == rows[-1] and held[2:5] == rows[2:5]
    assert row_item_ids(held) == row_item_ids(rows) == [str(row["item_id"]) for row in rows]
    assert row_semantic_ids(held) == row_semantic_ids(rows) == [row["semantic_id"] for row in rows]
    held[0]["title"] = "changed"
    assert held[0]["title"] == rows[0]["title"]
