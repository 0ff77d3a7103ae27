"""``semid-service``: the service's operational commands, one function each.

Every command prints one line to stderr and exits 2 on bad input or an unreachable database; heavy
imports (torch, transformers) belong inside the command that needs them, so ``migrate`` and
``wait-for-db`` start in a blink.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from app.db.loader import CatalogueLoadError, load_catalogue
from app.db.migrate import MigrationsNotFound, downgrade, upgrade
from app.db.repository import CatalogueRepository
from app.db.session import DEFAULT_DATABASE_URL, create_db_engine
from app.settings import BUNDLES_DIR, Settings
from semantic_ids.bundle import MANIFEST, BundleMismatch

logger = logging.getLogger(__name__)

app = typer.Typer(
    name="semid-service",
    help="Operate the semantic-ID recommender service: database, catalogue, server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DatabaseUrl = Annotated[
    str,
    typer.Option("--database-url", envvar="DATABASE_URL", help="SQLAlchemy URL of the catalogue database."),
]
# serve and demo read the URL through ``Settings`` (DATABASE_URL, then SEMID_DATABASE_URL) unless the
# flag is given, so an option default never hides the service's own environment.
ServiceDatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL of the catalogue database (default: DATABASE_URL or SEMID_DATABASE_URL).",
    ),
]
EXIT_BAD_INPUT = 2


class CliError(Exception):
    """A problem the user can fix; reported as one line."""


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Expected failures become one line on stderr and exit status 2 (no traceback)."""
    try:
        yield
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"{exc.title}: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
    except SQLAlchemyError as exc:
        fail(f"database error: {str(exc).splitlines()[0]}")
    except (
        CliError,
        LookupError,  # ItemNotFound: a delete of an item the catalogue lacks
        RuntimeError,  # UpdatesUnavailable, IdSpaceFull, CatalogueConflict, EncoderUnavailable, migrations
        CatalogueLoadError,
        BundleMismatch,
        MigrationsNotFound,
        OSError,
        ValueError,
    ) as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


@app.callback()
def _configure(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs.")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _echo_report(report: dict[str, Any], path: Path | None) -> None:
    text = json.dumps(report, indent=2, default=str)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    typer.echo(text)


@app.command()
def migrate(
    database_url: DatabaseUrl = DEFAULT_DATABASE_URL,
    revision: Annotated[str, typer.Option(help="Alembic revision to upgrade to.")] = "head",
) -> None:
    """Upgrade the database schema (a deployment step of its own; the server never migrates)."""
    with one_line_errors():
        upgrade(database_url, revision)


@app.command("downgrade")
def downgrade_command(
    revision: Annotated[str, typer.Option(help="Alembic revision to go back to, e.g. 'base' or '-1'.")],
    database_url: DatabaseUrl = DEFAULT_DATABASE_URL,
) -> None:
    """Downgrade the database schema to REVISION ('base' drops the catalogue tables)."""
    with one_line_errors():
        downgrade(database_url, revision)


@app.command("load-catalogue")
def load_catalogue_command(
    bundle: Annotated[Path, typer.Option(help="Bundle folder (manifest.json, catalogue.jsonl).")],
    database_url: DatabaseUrl = DEFAULT_DATABASE_URL,
    report: Annotated[Path | None, typer.Option(help="Also write the JSON report to this file.")] = None,
) -> None:
    """Make the database hold exactly the bundle's catalogue (with its overlay of items added, changed or
    deleted since training), in one transaction; print a JSON report."""
    from app.catalogue_updates import read_bundle_catalogue, served_catalogue

    with one_line_errors():
        manifest, base_rows, overlay = read_bundle_catalogue(bundle)
        items, _ = served_catalogue(manifest, base_rows, None, overlay)
        version = manifest.catalogue.content_hash if overlay is None else overlay.catalogue_hash
        engine = create_db_engine(database_url)
        try:
            result = load_catalogue(engine, items, version, scheme=manifest.semantic_ids.scheme)
        finally:
            engine.dispose()
        overlay_version = 0 if overlay is None else overlay.version
        _echo_report(
            {"bundle_id": manifest.bundle_id, "overlay_version": overlay_version, **result.as_dict()}, report
        )


@app.command("add-items")
def add_items_command(
    changes: Annotated[
        Path, typer.Argument(help='JSONL: items in the import form, or {"item_id", "delete": true}.')
    ],
    bundle: Annotated[Path, typer.Option(help="Bundle folder whose catalogue to change.")],
    database_url: DatabaseUrl = DEFAULT_DATABASE_URL,
    report: Annotated[Path | None, typer.Option(help="Also write the JSON report to this file.")] = None,
) -> None:
    """Add, replace or delete items of a bundle's catalogue without retraining: new IDs from its frozen
    RQ-VAE, the overlay on disk and the database changed together. For a stopped service (a running
    one takes the same changes over HTTP: PUT /items/{item_id}, POST /items/batch)."""
    from app.catalogue_updates import CatalogueUpdater, parse_jsonl

    with one_line_errors():
        if not changes.is_file():
            raise CliError(f"{changes}: no such file")
        engine = create_db_engine(database_url)
        try:
            updater = CatalogueUpdater.for_bundle(bundle, engine)
            result = updater.apply(updater.parse(parse_jsonl(changes.read_bytes())), lambda live: None)
        finally:
            engine.dispose()
        outcome = {
            "bundle": str(bundle),
            "overlay_version": result.overlay_version,
            "catalogue_hash": result.catalogue_hash,
            "item_count": result.item_count,
            "counts": result.counts,
            "seconds": result.seconds,
            "items": [vars(item) for item in result.outcomes],
        }
        _echo_report(outcome, report)


@app.command("compact")
def compact_command(
    bundle: Annotated[Path, typer.Option(help="Bundle folder whose overlay to fold in.")],
) -> None:
    """Rebuild the bundle from base + overlay (catalogue, lexical index, dense vectors), in place and
    atomically; the model files stay, retired IDs stay retired, the database needs no reload."""
    from app.catalogue_updates import compact_bundle

    with one_line_errors():
        manifest = compact_bundle(bundle)
        _echo_report(
            {"bundle": str(bundle), "bundle_id": manifest.bundle_id, **manifest.catalogue.model_dump()}, None
        )


@app.command("wait-for-db")
def wait_for_db(
    database_url: DatabaseUrl = DEFAULT_DATABASE_URL,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 60.0,
    interval: Annotated[float, typer.Option(help="Seconds between attempts.")] = 1.0,
) -> None:
    """Wait until the database answers (compose prestart runs this before migrating)."""
    with one_line_errors():
        engine = create_db_engine(database_url)
        deadline = time.monotonic() + timeout
        try:
            repository = CatalogueRepository(engine)
            while not repository.ping():
                if time.monotonic() + interval > deadline:
                    raise CliError(f"the database did not answer within {timeout:g} s")
                time.sleep(interval)
        finally:
            engine.dispose()
        logger.info("database is up")


Host = Annotated[str | None, typer.Option(help="Interface to listen on (default: SEMID_HOST or 127.0.0.1).")]
Port = Annotated[int | None, typer.Option(help="Port to listen on (default: SEMID_PORT or 8000).")]
DEMO_QUERY = "a 90s sci-fi thriller with Keanu Reeves"


def _service_settings(**overrides: Any) -> Settings:
    """The service ``Settings`` from the environment, with the options given on the command line on top."""
    return Settings(**{name: value for name, value in overrides.items() if value is not None})


@app.command()
def serve(
    bundle: Annotated[Path | None, typer.Option(help="Bundle folder (default: SEMID_BUNDLE_DIR).")] = None,
    base_models_dir: Annotated[
        Path | None, typer.Option(help="Prepared base models (default: SEMID_BASE_MODELS_DIR).")
    ] = None,
    database_url: ServiceDatabaseUrl = None,
    host: Host = None,
    port: Port = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda (default: SEMID_DEVICE).")] = None,
) -> None:
    """Serve the HTTP API: check the bundle against the database, load it once, warm up, listen."""
    from app.server import run_server

    with one_line_errors():
        settings = _service_settings(
            bundle_dir=bundle,
            base_models_dir=base_models_dir,
            database_url=database_url,
            host=host,
            port=port,
            device=device,
        )
        run_server(settings)


@app.command()
def demo(
    profile: Annotated[str, typer.Option(help="Serve artifacts/bundles/<profile>.")] = "demo",
    database_url: ServiceDatabaseUrl = None,
    host: Host = None,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Migrate the database, load the demo bundle's catalogue into it and serve it; print a curl to try."""
    from app.server import run_server

    with one_line_errors():
        bundle = BUNDLES_DIR / profile
        if not (bundle / MANIFEST).is_file():
            raise CliError(f"no bundle at {bundle}: build it first with `semid pipeline --profile {profile}`")
        settings = _service_settings(bundle_dir=bundle, database_url=database_url, host=host, port=port)
        upgrade(settings.database_url)
        load_catalogue_command(bundle=bundle, database_url=settings.database_url, report=None)
        where = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
        request = json.dumps({"query": DEMO_QUERY, "k": 5})

        def announce() -> None:
            typer.echo(f"\nready on http://{where}:{settings.port}  (docs: /docs, metrics: /metrics). Try:\n")
            typer.echo(
                f"curl -s http://{where}:{settings.port}/recommend "
                f"-H 'Content-Type: application/json' -d '{request}'\n"
            )

        run_server(settings, on_ready=announce)


def main() -> None:
    app()


if __name__ == "__main__":  # python -m app.cli: the semid-service script, where it is not installed
    main()
