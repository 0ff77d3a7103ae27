"""``.ci/run`` on a fresh machine: it installs Chromium and its driver when either is missing, quietly and
without questions, before ``make test``; where both are there it installs nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

CI_RUN = Path(__file__).resolve().parents[3] / ".ci" / "run"


def _fake_commands(bin_dir: Path, calls: Path) -> None:
    """apt-get, sudo and make that only record how they were called (apt-get also its environment)."""
    bin_dir.mkdir()
    scripts = {
        "apt-get": f'echo "apt-get $* DEBIAN_FRONTEND=${{DEBIAN_FRONTEND:-}}" >> {calls}\n',
        "make": f'echo "make $*" >> {calls}\n',
        "sudo": 'exec "$@"\n',
    }
    for name, body in scripts.items():
        script = bin_dir / name
        script.write_text("#!/usr/bin/env bash\n" + body)
        script.chmod(0o755)


def _run_ci(tmp_path: Path, chromium: Path, chromedriver: Path) -> list[str]:
    calls = tmp_path / "calls.txt"
    calls.touch()
    _fake_commands(tmp_path / "bin", calls)
    env = os.environ | {
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        "SEMID_TEST_CHROMIUM": str(chromium),
        "SEMID_TEST_CHROMEDRIVER": str(chromedriver),
    }
    env.pop("DEBIAN_FRONTEND", None)
    subprocess.run(["bash", str(CI_RUN)], env=env, check=True, capture_output=True, timeout=60)
    return calls.read_text().splitlines()


def _executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("missing", ["chromium", "chromedriver"])
def test_a_missing_browser_part_is_installed_before_the_tests(tmp_path: Path, missing: str) -> None:
    parts = {name: _executable(tmp_path / name) for name in ("chromium", "chromedriver")}
    parts[missing] = tmp_path / "absent" / missing
    assert _run_ci(tmp_path, parts["chromium"], parts["chromedriver"]) == [
        "apt-get update -qq DEBIAN_FRONTEND=noninteractive",
        "apt-get install -y -qq chromium chromium-driver DEBIAN_FRONTEND=noninteractive",
        "make test",
    ]


def test_nothing_is_installed_when_both_are_there(tmp_path: Path) -> None:
    chromium, chromedriver = _executable(tmp_path / "chromium"), _executable(tmp_path / "chromedriver")
    assert _run_ci(tmp_path, chromium, chromedriver) == ["make test"]
