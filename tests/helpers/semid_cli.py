"""Run the `semid` CLI in process, as a user would, and return its exit code."""

from __future__ import annotations

import sys

import pytest


def run_semid(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    from training.cli import main

    monkeypatch.setattr(sys, "argv", ["semid", "--threads", "1", *args])
    try:
        main()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0
