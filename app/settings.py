"""The service's one settings class, read from the environment (prefix ``SEMID_``, plus ``DATABASE_URL``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.db.session import DEFAULT_DATABASE_URL

Device = Literal["auto", "cpu", "cuda"]
BUNDLES_DIR = Path("artifacts/bundles")  # where `semid` writes bundles, one folder per profile


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEMID_", extra="ignore", frozen=True)

    bundle_dir: Path = BUNDLES_DIR / "demo"
    # Both spellings are accepted, so a deployment that sets the singular SEMID_BASE_MODEL_DIR works too.
    base_models_dir: Path = Field(
        default=Path("artifacts/base_models"),
        validation_alias=AliasChoices("SEMID_BASE_MODELS_DIR", "SEMID_BASE_MODEL_DIR", "base_models_dir"),
    )
    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("DATABASE_URL", "SEMID_DATABASE_URL", "database_url"),
    )
    device: Device = "auto"  # CUDA when present, else CPU
    # auto: bf16 on CUDA, on CPUs with AMX, where it halves decode time at equal held-out recall, and on AMD
    # CPUs with AVX512-BF16 (half fp32's time, 5 % under fp16 weights'); fp32 compute over fp16-stored linear
    # weights on other AVX2 CPUs (25 % less than fp32 on an AVX2-only one, level with bf16 on an Intel
    # AVX512-BF16 one without AMX); fp32 elsewhere
    # (semantic_ids.causal_lm.inference_precision, bench/HISTORY.md).
    precision: Literal["auto", "bf16", "fp32", "fp16-weights"] = "auto"

    # Decoding and request limits.
    num_beams: int = Field(default=10, ge=1, le=200)
    max_k: int = Field(default=50, ge=1, le=200)
    max_query_chars: int = Field(default=512, ge=1)  # a cheap first check, before tokenising
    # Decode cost grows with prompt tokens (CJK or emoji text is 3-4 tokens a character), so the real
    # query limit is in tokens; a typical query is about 18.
    max_query_tokens: int = Field(default=128, ge=1, le=4096)
    # A request not answered within this (queue wait and decode) gets a 504, so no request waits
    # without bound behind a slow decode.
    request_timeout_s: float = Field(default=30.0, gt=0.0, le=600.0)

    # Micro-batching: requests that arrive together are decoded in one batch. A batch waits at most
    # batch_max_wait_ms for company once the decoder is free; past max_queued requests -> 503.
    batch_max_size: int = Field(default=8, ge=1, le=256)
    batch_max_wait_ms: float = Field(default=5.0, ge=0.0, le=1000.0)
    max_queued: int = Field(default=64, ge=1)
    retry_after_s: int = Field(default=1, ge=1)
    # /recommend's catalogue rows held in memory (app.db.row_cache), at most this many (0: read every
    # request's from the database); a film's row is a few kilobytes.
    row_cache_items: int = Field(default=10_000, ge=0)

    # /readyz re-reads the database's catalogue hash at most this often (0: on every probe) and reports
    # not ready when another catalogue was loaded under the running service.
    catalogue_check_interval_s: float = Field(default=30.0, ge=0.0)

    # Catalogue updates (PUT/DELETE /items/{item_id}, POST /items/batch) need this token as
    # "Authorization: Bearer <token>"; unset, they are off (403) and the query encoder loads only when the
    # bundle's fusion uses the dense source. Read routes never need it.
    admin_token: SecretStr | None = None

    @field_validator("admin_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # SEMID_ADMIN_TOKEN= (compose's "${SEMID_ADMIN_TOKEN:-}") means no token, not an empty one.
        return None if isinstance(value, str) and not value.strip() else value

    max_update_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)  # a batch; larger -> 413
    max_update_items: int = Field(default=10_000, ge=1)  # changes in one batch; more -> 422

    torch_threads: int | None = Field(default=None, ge=1)
    warm_up: bool = True

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    # Server limits, all in one place (README, "The service"). A /recommend body is well under 16 KiB.
    max_body_bytes: int = Field(default=16 * 1024, ge=1024)  # larger -> 413
    body_read_timeout_s: float = Field(default=10.0, gt=0.0)  # a body chunk not arriving in time -> 408
    timeout_keep_alive_s: int = Field(default=5, ge=1)  # idle keep-alive connections are closed
    h11_max_incomplete_event_size: int = Field(default=16 * 1024, ge=1024)  # request line + headers
    limit_concurrency: int = Field(default=128, ge=1)  # connections + tasks; past it uvicorn answers 503
