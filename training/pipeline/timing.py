"""Stage timings for the pipeline reports."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


def timed(timings: dict[str, float], name: str, stage: Callable[[], T], *, digits: int = 1) -> T:
    """Run ``stage``; record its wall-clock seconds under ``name``, rounded to ``digits``."""
    started = time.perf_counter()
    value = stage()
    timings[name] = round(time.perf_counter() - started, digits)
    logger.info("stage %s: %.1f s", name, timings[name])
    return value
