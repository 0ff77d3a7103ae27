"""Reading and writing the files of a run: JSON, JSONL, atomic writes, and pictures.

A file is written beside its target and moved into place with ``os.replace``, so a reader sees the
old file or the new one, never half of one, and a failed step leaves nothing behind. Folders are
written the same way with ``atomic_directory`` (the bundle's own helper, re-exported here). A picture
is a convenience: ``write_plot`` turns a failed drawing into a warning, so the run goes on.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from semantic_ids.bundle import atomic_directory

__all__ = [
    "atomic_directory",
    "atomic_path",
    "read_json",
    "read_jsonl",
    "write_json",
    "write_jsonl",
    "write_plot",
]

logger = logging.getLogger(__name__)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path (same folder, same suffix) that replaces ``path`` if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
    try:
        yield partial
        os.chmod(partial, 0o644)  # temp files start private; the result is an ordinary artefact
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_jsonl(rows: Iterable[Mapping[str, Any]], path: Path) -> None:
    with atomic_path(path) as partial, partial.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every JSON object of a JSONL file, skipping blank lines."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_json(data: Any, path: Path) -> None:
    with atomic_path(path) as partial:
        partial.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_plot(draw: Callable[[Path], None], path: Path) -> Path | None:
    """``draw(path)``; the path when it worked, None (and a warning) when it did not."""
    try:
        draw(path)
    except Exception as error:  # a missing font or a bad figure must not lose a run's results
        logger.warning("could not draw %s: %s: %s", path, type(error).__name__, error)
        path.unlink(missing_ok=True)  # an earlier run's picture would pass for this one's
        return None
    return path
