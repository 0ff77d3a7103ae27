"""Text keys, each with the ascending rows that hold it, stored as three files a bundle can carry.

The lexical index's lookups from a word, a name, an attribute value or a title trigram to catalogue rows
(``NamedPeople``, ``RowAttributes``, ``TitleGrams``) are built from every row in Python: about a minute for a
million rows, at every start of the service. Built once when the bundle is written and kept here, a load
reads them back in a second or two (bench/RESULTS.md, Scale).

On disk, ``<name>.keys.txt`` (the keys, one a line: a key never holds a line break, every key is folded
text), ``<name>.rows.npy`` (int32, every key's rows one after another) and ``<name>.bounds.npy`` (int64,
key ``i``'s rows are ``rows[bounds[i]:bounds[i + 1]]``); read with ``allow_pickle=False``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from semantic_ids.bundle import BundleMismatch


class RowGroups:
    """Keys in a fixed order, each with its rows."""

    def __init__(self, keys: Sequence[str], rows: np.ndarray, bounds: np.ndarray) -> None:
        if len(bounds) != len(keys) + 1 or (len(keys) and bounds[-1] != len(rows)):
            raise ValueError(f"{len(keys)} keys, {len(bounds)} bounds and {len(rows)} rows do not fit")
        self.keys = list(keys)
        self._number = {key: number for number, key in enumerate(self.keys)}
        self._rows = rows
        self._bounds = bounds

    @classmethod
    def of(cls, rows_of: Mapping[str, Sequence[int]]) -> RowGroups:
        """From key -> rows, keys in the mapping's order."""
        counts = np.fromiter((len(rows) for rows in rows_of.values()), dtype=np.int64, count=len(rows_of))
        bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        rows = np.fromiter((row for found in rows_of.values() for row in found), np.int32, int(bounds[-1]))
        return cls(list(rows_of), rows, bounds)

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self._number

    def get(self, key: str) -> np.ndarray | None:
        """The rows holding ``key``, or None when no row does."""
        number = self._number.get(key)
        if number is None:
            return None
        return self._rows[self._bounds[number] : self._bounds[number + 1]]

    def __getitem__(self, key: str) -> np.ndarray:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        for number, key in enumerate(self.keys):
            yield key, self._rows[self._bounds[number] : self._bounds[number + 1]]

    def save(self, folder: Path, name: str) -> None:
        if any("\n" in key for key in self.keys):
            raise ValueError(f"{name}: a key holds a line break")
        (folder / f"{name}.keys.txt").write_text("\n".join(self.keys), encoding="utf-8")
        np.save(folder / f"{name}.rows.npy", self._rows, allow_pickle=False)
        np.save(folder / f"{name}.bounds.npy", self._bounds, allow_pickle=False)

    @classmethod
    def load(cls, folder: Path, name: str) -> RowGroups:
        """``BundleMismatch`` when the files are missing or do not fit together."""
        try:
            bounds = np.load(folder / f"{name}.bounds.npy", allow_pickle=False)
            rows = np.load(folder / f"{name}.rows.npy", allow_pickle=False)
            text = (folder / f"{name}.keys.txt").read_text(encoding="utf-8")
        except (OSError, ValueError) as error:
            raise BundleMismatch(f"lexical index {folder}: cannot read {name}: {error}") from error
        keys = text.split("\n")[: len(bounds) - 1] if len(bounds) > 1 else []
        try:
            return cls(keys, rows, bounds)
        except ValueError as error:
            raise BundleMismatch(f"lexical index {folder}: {name}: {error}") from error
