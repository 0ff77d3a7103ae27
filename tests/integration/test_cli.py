"""``semid-service`` migrate / load-catalogue / downgrade / wait-for-db, against both databases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import Engine, inspect
from typer.testing import CliRunner

from app.cli import app
from tests.helpers.db_snapshot import items_snapshot, state_snapshot
from tests.helpers.private_postgres import free_port
from tests.helpers.sample_catalogue import make_items, write_catalogue_bundle

runner = CliRunner()


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


def test_migrate_then_load_twice(database_url: str, engine: Engine, tmp_path: Path) -> None:
    manifest = write_catalogue_bundle(tmp_path / "bundle", make_items(6))
    env = {"DATABASE_URL": database_url}

    assert runner.invoke(app, ["migrate"], env=env).exit_code == 0
    first = runner.invoke(app, ["load-catalogue", "--bundle", str(tmp_path / "bundle")], env=env)
    again = runner.invoke(
        app,
        ["load-catalogue", "--bundle", str(tmp_path / "bundle"), "--report", str(tmp_path / "r.json")],
        env=env,
    )

    assert first.exit_code == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["bundle_id"] == "sample-bundle" and report["inserted"] == 6
    assert report["catalogue_version"] == manifest.catalogue.content_hash
    assert again.exit_code == 0, again.stderr
    assert json.loads((tmp_path / "r.json").read_text())["unchanged"] == 6
    state = state_snapshot(engine)
    assert state is not None and state[1:3] == (manifest.catalogue.content_hash, 6)


def test_a_bundle_whose_catalogue_does_not_match_its_manifest_is_refused(
    database_url: str, migrated_engine: Engine, tmp_path: Path
) -> None:
    write_catalogue_bundle(tmp_path / "bundle", make_items(6))
    with (tmp_path / "bundle" / "catalogue.jsonl").open("a") as handle:
        handle.write(
            json.dumps({"item_id": "x", "title": "x", "fields": {}, "semantic_id": [7, 7, 1]}) + "\n"
        )

    result = runner.invoke(app, ["load-catalogue", "--bundle", str(tmp_path / "bundle")],
                           env={"DATABASE_URL": database_url})  # fmt: skip

    assert result.exit_code == 2
    assert "(7 items) does not match its manifest's catalogue (6 items" in _one_error_line(result.stderr)
    assert items_snapshot(migrated_engine) == []


def test_loading_before_migrating_says_so(database_url: str, tmp_path: Path) -> None:
    write_catalogue_bundle(tmp_path / "bundle", make_items(3))
    result = runner.invoke(app, ["load-catalogue", "--bundle", str(tmp_path / "bundle")],
                           env={"DATABASE_URL": database_url})  # fmt: skip
    assert result.exit_code == 2
    assert "database error" in _one_error_line(result.stderr)


def test_downgrade_to_base(database_url: str, engine: Engine) -> None:
    env = {"DATABASE_URL": database_url}
    assert runner.invoke(app, ["migrate"], env=env).exit_code == 0
    assert runner.invoke(app, ["downgrade", "--revision", "base"], env=env).exit_code == 0
    assert "items" not in inspect(engine).get_table_names()


def test_an_unknown_revision_is_one_line_and_exit_2(database_url: str, engine: Engine) -> None:
    result = runner.invoke(app, ["migrate", "--revision", "nonexistent"], env={"DATABASE_URL": database_url})
    assert result.exit_code == 2
    assert "nonexistent" in _one_error_line(result.stderr)


def test_wait_for_db(database_url: str) -> None:
    assert (
        runner.invoke(app, ["wait-for-db", "--timeout", "5"], env={"DATABASE_URL": database_url}).exit_code
        == 0
    )


def test_wait_for_db_gives_up() -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres"
    result = runner.invoke(app, ["wait-for-db", "--timeout", "1", "--interval", "0.2", "--database-url", url])
    assert result.exit_code == 2
    assert "did not answer within 1 s" in _one_error_line(result.stderr)


def test_the_console_script_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("semid-service")
    result = subprocess.run(
        [str(script), "load-catalogue", "--bundle", "does/not/exist", "--database-url", f"sqlite:///{tmp_path}/c.db"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == "error: does/not/exist is not a bundle: it has no manifest.json"
