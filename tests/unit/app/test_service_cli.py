"""``semid-service serve`` takes its settings from the environment unless a flag says otherwise."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import app.server
from app.cli import app as cli
from app.settings import Settings


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """The settings ``serve`` would start the server with (the server itself is not started)."""
    calls: list[Settings] = []
    monkeypatch.setattr(app.server, "run_server", lambda settings, **_: calls.append(settings))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return calls


def test_serve_honours_semid_database_url(served: list[Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMID_DATABASE_URL", "sqlite:///from-env.db")
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 0, result.output
    assert [s.database_url for s in served] == ["sqlite:///from-env.db"]


def test_serve_flag_beats_the_environment(served: list[Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMID_DATABASE_URL", "sqlite:///from-env.db")
    result = CliRunner().invoke(cli, ["serve", "--database-url", "sqlite:///from-flag.db"])
    assert result.exit_code == 0, result.output
    assert [s.database_url for s in served] == ["sqlite:///from-flag.db"]
