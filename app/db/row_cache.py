"""Catalogue rows held in memory by semantic ID, read through from the database.

A /recommend answer needs its ten rows. Read from PostgreSQL on every request they cost about 5 ms of the
server's CPU a request (a session, the pool's ping, the query, the ORM's objects: py-spy on a server
answering 8 clients, bench/HISTORY.md, 2026-12-06, eighth session), on the same cores that decode and
holding the GIL the decode's Python steps need, with PostgreSQL's own work beside them.

The rows of the served catalogue change only through ``Service.change_items``, which clears the cache
once the database and the served IDs both hold the change (and the readiness check clears it when it
finds another catalogue in the database). A read from the database that began before a clear stores
nothing (the generation says so), so no row older than the clear comes back after it. Bounded: past
``capacity`` rows the ones stored first go first; 0 turns the cache off.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from app.db.repository import CatalogueRepository, ItemRow
from semantic_ids.ids import SemanticId


class RowCache:
    def __init__(self, repository: CatalogueRepository, capacity: int) -> None:
        self._repository = repository
        self.capacity = capacity
        self._rows: dict[str, ItemRow] = {}
        self._generation = 0
        self._lock = threading.Lock()  # requests read rows on worker threads, several at once

    def __len__(self) -> int:
        return len(self._rows)

    def get_many(self, semantic_ids: Sequence[SemanticId]) -> list[ItemRow]:
        """Rows in the caller's order, those not held read in one query; ``ItemNotFound`` (the
        repository's) lists any the database lacks."""
        with self._lock:
            generation = self._generation
            held = {
                sid.compact: row for sid in semantic_ids if (row := self._rows.get(sid.compact)) is not None
            }
        missing = [sid for sid in semantic_ids if sid.compact not in held]
        if missing:
            read = self._repository.get_many_by_semantic_ids(missing)
            held.update((row.semantic_id.compact, row) for row in read)
            self._store(read, generation)
        return [held[sid.compact] for sid in semantic_ids]

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self._generation += 1

    def _store(self, rows: Sequence[ItemRow], generation: int) -> None:
        if self.capacity == 0:
            return
        with self._lock:
            if generation != self._generation:  # cleared while the rows were read: they may be stale
                return
            for row in rows:
                self._rows[row.semantic_id.compact] = row
            while len(self._rows) > self.capacity:
                del self._rows[next(iter(self._rows))]
