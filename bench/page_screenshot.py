"""A screenshot of the page at ``/`` showing the results of a film query, for the README (``docs/page.png``).

    .venv/bin/python -m bench.page_screenshot [--bundle artifacts/bundles/demo] [--out docs/page.png]

Serves the bundle with the real service (uvicorn; its catalogue in a throwaway SQLite file), types the
query into the page in headless Chromium (the browser test's, no network beyond this machine), and saves
the whole page once the results are in. Without a built demo bundle it serves the tiny test bundle
instead: 20 films and a random tiny model, so the page is the same but the ranking means nothing.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait

from app.db import create_db_engine, load_catalogue
from app.db.migrate import upgrade
from app.main import create_app
from app.settings import Settings
from semantic_ids.bundle import MANIFEST, read_catalogue, read_manifest
from tests.helpers.browser import headless_chromium
from tests.helpers.live_server import live_server
from training.run_layout import BASE_MODELS_DIR, bundle_dir_for

logger = logging.getLogger("bench.page_screenshot")

DEFAULT_QUERY = "a nineties sci-fi thriller with Keanu Reeves"
TINY_QUERY = "a crime drama by Michael Mann"  # a director the tiny catalogue has
WIDTH = 1000
RESULTS = 5


def _load_catalogue(bundle_dir: Path, database_url: str) -> None:
    manifest = read_manifest(bundle_dir)
    upgrade(database_url)
    engine = create_db_engine(database_url)
    try:
        scheme = manifest.semantic_ids.scheme
        load_catalogue(engine, read_catalogue(bundle_dir), manifest.catalogue.content_hash, scheme=scheme)
    finally:
        engine.dispose()


def _tiny_bundle(root: Path) -> tuple[Path, Path]:
    from tests.helpers.tiny_bundle import make_tiny_bundle  # trains a tiny model: only when needed

    bundle = make_tiny_bundle(root)
    return bundle.bundle_dir, bundle.base_models_dir


def capture(base_url: str, query: str, out: Path) -> None:
    """Type ``query`` on the page at ``base_url``, submit with Enter, and save the whole page to ``out``."""
    with headless_chromium(width=WIDTH, height=800) as driver:
        driver.get(f"{base_url}/")
        k = driver.find_element(By.ID, "k")
        k.clear()
        k.send_keys(str(RESULTS))
        driver.find_element(By.ID, "query").send_keys(query, Keys.ENTER)
        WebDriverWait(driver, 300).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results li"))
        driver.execute_script("document.activeElement.blur()")  # no focus ring in the picture
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        # The whole page in one viewport: headless windows keep their first size.
        metrics = {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not driver.save_screenshot(str(out)):
            raise RuntimeError(f"the browser could not write {out}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A screenshot of the page at / with a query's results.")
    parser.add_argument("--bundle", type=Path, default=bundle_dir_for("demo"))
    parser.add_argument("--base-models-dir", type=Path, default=BASE_MODELS_DIR)
    parser.add_argument("--query", default=None, help="default: a film query that fits the bundle")
    parser.add_argument("--out", type=Path, default=Path("docs/page.png"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="semid-screenshot-") as scratch:
        bundle_dir, base_models_dir, query = args.bundle, args.base_models_dir, args.query or DEFAULT_QUERY
        if not (bundle_dir / MANIFEST).is_file():
            logger.warning("no bundle at %s: serving the tiny test bundle instead", bundle_dir)
            bundle_dir, base_models_dir = _tiny_bundle(Path(scratch))
            query = args.query or TINY_QUERY
        database_url = f"sqlite:///{Path(scratch) / 'catalogue.db'}"
        _load_catalogue(bundle_dir, database_url)
        settings = Settings(bundle_dir=bundle_dir, base_models_dir=base_models_dir, database_url=database_url)
        with live_server(create_app(settings), start_timeout_s=600) as base_url:
            capture(base_url, query, args.out)
    logger.info("wrote %s (%s)", args.out, bundle_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
