"""Run a hook before every decode of a service's decoder, in each of its modes' entry points."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# generative mode calls ``decode``; hybrid mode ``decode_and_score`` (the beams and the finds in one pass)
DECODE_METHODS = ("decode", "decode_and_score")


def before_each_decode(decoder: Any, hook: Callable[[list[str]], None]) -> None:
    """``hook(queries)`` runs (and may block or raise) before the real decode of any batch."""
    for name in DECODE_METHODS:
        real: Callable[..., Any] = getattr(decoder, name)

        def hooked(queries: list[str], *args: Any, _real: Callable[..., Any] = real, **kwargs: Any) -> Any:
            hook(queries)
            return _real(queries, *args, **kwargs)

        setattr(decoder, name, hooked)
