"""Start-up refuses what it must not serve, in one line; `semid-service demo` serves and prints a curl."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.cli import app as cli
from app.db.migrate import upgrade
from app.errors import DatabaseUnavailable
from app.main import create_app
from semantic_ids.bundle import BundleMismatch
from tests.helpers.private_postgres import free_port
from tests.helpers.service import prepare_database, service_settings
from tests.helpers.tiny_bundle import TinyBundle


def _serve_args(bundle: TinyBundle, database_url: str) -> list[str]:
    return [
        "serve",
        "--bundle",
        str(bundle.bundle_dir),
        "--base-models-dir",
        str(bundle.base_models_dir),
        "--database-url",
        database_url,
    ]


def _start(bundle: TinyBundle, database_url: str) -> None:
    """Run the app's start-up (its lifespan) and shut it down again."""
    with TestClient(create_app(service_settings(bundle, database_url))):
        pass


def test_a_bundle_for_another_catalogue_is_refused(tiny_bundle: TinyBundle, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    prepare_database(url, tiny_bundle, version="f" * 64)
    with pytest.raises(
        BundleMismatch, match=r"serves catalogue \w+, but the catalogue being served is f{12}"
    ):
        _start(tiny_bundle, url)
    result = CliRunner().invoke(cli, _serve_args(tiny_bundle, url))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "is ffffffffffff" in lines[0] and "Traceback" not in result.output


def test_a_database_without_a_catalogue_is_refused(tiny_bundle: TinyBundle, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    upgrade(url)
    with pytest.raises(BundleMismatch, match="holds no catalogue: run `semid-service load-catalogue"):
        _start(tiny_bundle, url)


def test_an_unreachable_database_is_refused_in_one_line(tiny_bundle: TinyBundle) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(DatabaseUnavailable, match="cannot read the catalogue"):
        _start(tiny_bundle, url)
    result = CliRunner().invoke(cli, _serve_args(tiny_bundle, url))
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1


def test_demo_without_a_bundle_says_how_to_build_one(tmp_path: Path) -> None:
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        result = CliRunner().invoke(cli, ["demo", "--profile", "nothing"])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 2
    assert "semid pipeline --profile nothing" in result.output


def test_demo_migrates_loads_serves_and_prints_a_working_curl(
    tiny_bundle: TinyBundle, tmp_path: Path
) -> None:
    shutil.copytree(tiny_bundle.bundle_dir, tmp_path / "artifacts" / "bundles" / "tiny")
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SEMID_") and key != "DATABASE_URL"
    }
    env |= {"SEMID_BASE_MODELS_DIR": str(tiny_bundle.base_models_dir), "SEMID_DEVICE": "cpu"}
    command = [
        str(Path(sys.executable).parent / "semid-service"),
        "demo",
        "--profile",
        "tiny",
        "--port",
        str(port),
    ]
    log = (tmp_path / "demo.log").open("w")
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        curl = _read_until_curl(process, timeout_s=180)
        assert (tmp_path / "artifacts" / "catalogue.db").is_file()  # the SQLite default, in the cwd
        words = shlex.split(curl)
        url, body = words[2], json.loads(words[words.index("-d") + 1])
        response = httpx.post(url, json=body, timeout=30)
        assert response.status_code == 200 and len(response.json()["items"]) == body["k"]
    finally:
        process.terminate()
        process.wait(30)
        log.close()
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal as its exit status.
    assert process.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in (tmp_path / "demo.log").read_text()


def _read_until_curl(process: subprocess.Popen[str], timeout_s: float) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    for line in process.stdout:
        if line.startswith("curl "):
            return line.strip()
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"demo printed no curl line (exit status {process.poll()})")
