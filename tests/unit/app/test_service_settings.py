"""The service settings read the environment under the documented names."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import Settings


def test_defaults_serve_the_demo_bundle_from_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "SEMID_DATABASE_URL", "SEMID_BASE_MODEL_DIR", "SEMID_BASE_MODELS_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.bundle_dir == Path("artifacts/bundles/demo")
    assert settings.database_url == "sqlite:///artifacts/catalogue.db"
    assert (settings.num_beams, settings.max_k, settings.max_query_chars) == (10, 50, 512)


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@db/semid")
    monkeypatch.setenv("SEMID_BASE_MODEL_DIR", "/models")  # the singular spelling
    monkeypatch.setenv("SEMID_BATCH_MAX_SIZE", "1")
    monkeypatch.setenv("SEMID_DEVICE", "cuda")
    settings = Settings()
    assert settings.database_url == "postgresql://postgres@db/semid"
    assert settings.base_models_dir == Path("/models")
    assert settings.batch_max_size == 1 and settings.device == "cuda"
    assert Settings(database_url="sqlite://").database_url == "sqlite://"  # arguments beat the environment


@pytest.mark.parametrize(
    ("name", "value"), [("SEMID_DEVICE", "tpu"), ("SEMID_NUM_BEAMS", "0"), ("SEMID_MAX_K", "x")]
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()
