"""``make test`` on a fresh machine: its ``browser`` step installs Chromium and its driver when either is
missing, quietly and without questions; where both are there it installs nothing. ``.ci/run`` is
``make test`` and nothing else, so the README's test command is what CI runs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CI_RUN = ROOT / ".ci" / "run"


def _fake_commands(bin_dir: Path, calls: Path) -> None:
    """apt-get, sudo and make stand-ins that only record how they were called (apt-get its environment)."""
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


def _env(tmp_path: Path, chromium: Path, chromedriver: Path) -> tuple[dict[str, str], Path]:
    calls = tmp_path / "calls.txt"
    calls.touch()
    _fake_commands(tmp_path / "bin", calls)
    env = os.environ | {
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        "SEMID_TEST_CHROMIUM": str(chromium),
        "SEMID_TEST_CHROMEDRIVER": str(chromedriver),
    }
    env.pop("DEBIAN_FRONTEND", None)
    return env, calls


def _make_browser(tmp_path: Path, chromium: Path, chromedriver: Path) -> list[str]:
    env, calls = _env(tmp_path, chromium, chromedriver)
    make = "/usr/bin/make"  # the real one: the stand-in on PATH is for .ci/run
    subprocess.run(
        [make, "-s", "-C", str(ROOT), "browser"], env=env, check=True, capture_output=True, timeout=60
    )
    return calls.read_text().splitlines()


def _executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


@pytest.mark.skipif(os.geteuid() != 0, reason="installs as root; as another user it asks sudo")
@pytest.mark.parametrize("missing", ["chromium", "chromedriver"])
def test_a_missing_browser_part_is_installed_before_the_tests(tmp_path: Path, missing: str) -> None:
    parts = {name: _executable(tmp_path / name) for name in ("chromium", "chromedriver")}
    parts[missing] = tmp_path / "absent" / missing
    assert _make_browser(tmp_path, parts["chromium"], parts["chromedriver"]) == [
        "apt-get update -qq DEBIAN_FRONTEND=noninteractive",
        "apt-get install -y -qq chromium chromium-driver DEBIAN_FRONTEND=noninteractive",
    ]


def test_nothing_is_installed_when_both_are_there(tmp_path: Path) -> None:
    chromium, chromedriver = _executable(tmp_path / "chromium"), _executable(tmp_path / "chromedriver")
    assert _make_browser(tmp_path, chromium, chromedriver) == []


def test_ci_runs_the_readme_test_command(tmp_path: Path) -> None:
    env, calls = _env(tmp_path, tmp_path / "chromium", tmp_path / "chromedriver")
    subprocess.run(["bash", str(CI_RUN)], env=env, check=True, capture_output=True, timeout=60)
    assert calls.read_text().splitlines() == ["make test"]
