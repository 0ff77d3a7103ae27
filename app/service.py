"""What the routes call: the engine behind the micro-batcher, and the catalogue repository.

``Service.load`` does every slow or fallible start-up step once (database check, bundle check, model
load, warm-up), so a process either starts ready or refuses with one line saying why.

Every torch computation of the service runs on one thread of its own (the "torch thread"): the load,
the warm-up, the micro-batcher's decodes and the embedding of new items. PyTorch's CPU operators run on an
OpenMP team that belongs to the calling thread and lives as long as it does; with two long-lived threads
that called torch, a 2-core CPU holds more OpenMP threads than cores, and libgomp then puts idle workers
to sleep after every parallel region and wakes them for the next (or, with ``OMP_WAIT_POLICY=ACTIVE``, one
team's idle worker spins on the core the other needs). Measured on 2026-12-06 on a 2-core AMX Xeon: a hybrid
query took 95 ms while one thread had run torch and 148-157 ms in either thread once two had
(bench/HISTORY.md); the service had loaded on one thread and decoded on another.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from app.catalogue_updates import CatalogueUpdater, ChangeReport, UpdatesUnavailable
from app.db import CatalogueRepository, ItemNotFound, ItemRow, create_db_engine
from app.db.row_cache import RowCache
from app.errors import DatabaseUnavailable, DeadlineExceeded, InvalidRequest
from app.inference.batching import MicroBatcher
from app.inference.engine import Recommender
from app.metrics import Metrics
from app.schemas import (
    ComponentScores,
    ItemPublic,
    Readiness,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
)
from app.settings import Settings
from semantic_ids.bundle import BundleMismatch, read_manifest
from semantic_ids.hybrid import Recommendation
from semantic_ids.overlay import overlay_bytes

logger = logging.getLogger(__name__)


class Service:
    def __init__(
        self,
        settings: Settings,
        recommender: Recommender,
        repository: CatalogueRepository,
        metrics: Metrics,
        updater: CatalogueUpdater | None = None,
        torch_thread: ThreadPoolExecutor | None = None,
    ) -> None:
        # The one thread that runs torch (the module's docstring says why); the batcher shuts it down.
        self.torch_thread = torch_thread or _new_torch_thread()
        self.settings = settings
        self.recommender = recommender
        self.repository = repository
        self.rows = RowCache(repository, settings.row_cache_items)  # /recommend's rows (app.db.row_cache)
        self.metrics = metrics
        self.updater = updater  # None: catalogue updates are off (no admin token, or the bundle cannot)
        recommender.on_fusion = metrics.fusion_latency.observe
        recommender.on_dense = metrics.dense_latency.observe
        self.batcher: MicroBatcher[Recommendation] = MicroBatcher(
            recommender.recommend,
            beams_for=recommender.beams_for,
            max_batch_size=settings.batch_max_size,
            max_wait_s=settings.batch_max_wait_ms / 1000.0,
            max_queued=settings.max_queued,
            retry_after_s=settings.retry_after_s,
            metrics=metrics,
            executor=self.torch_thread,
        )
        self.running = False
        # Service.load checked the database holds the bundle's catalogue; readiness re-checks it.
        self._catalogue_checked_at = time.monotonic()
        self._catalogue_problem: str | None = None

    @classmethod
    def load(cls, settings: Settings, metrics: Metrics) -> Service:
        """Check the database holds the bundle's catalogue, load the model, warm it up: on the torch
        thread, which then decodes."""
        torch_thread = _new_torch_thread()
        try:
            return torch_thread.submit(cls._load, settings, metrics, torch_thread).result()
        except BaseException:
            torch_thread.shutdown(wait=False)
            raise

    @classmethod
    def _load(cls, settings: Settings, metrics: Metrics, torch_thread: ThreadPoolExecutor) -> Service:
        read_manifest(settings.bundle_dir)  # a wrong bundle path is named before the database is asked
        engine = create_db_engine(settings.database_url)
        repository = CatalogueRepository(engine)
        try:
            expected_hash, item_count = _served_catalogue(repository, engine)
            recommender = Recommender.load(
                settings.bundle_dir,
                settings.base_models_dir,
                device=settings.device,
                precision=settings.precision,
                num_beams=settings.num_beams,
                torch_threads=settings.torch_threads,
                expected_catalogue_hash=expected_hash,
                with_dense=settings.admin_token is not None,  # new items are embedded with its encoder
            )
            updater = _updater(settings, recommender, engine)
            if settings.warm_up:
                recommender.warm_up()
        except BaseException:
            engine.dispose()
            raise
        metrics.describe_bundle(recommender.manifest, item_count)
        metrics.overlay_bytes.set(overlay_bytes(settings.bundle_dir))
        return cls(settings, recommender, repository, metrics, updater, torch_thread)

    async def start(self) -> None:
        await self.batcher.start()
        self.running = True

    async def stop(self) -> None:
        self.running = False
        await self.batcher.stop()
        self.repository.engine.dispose()

    async def recommend(self, request: RecommendRequest) -> RecommendResponse:
        started = time.perf_counter()
        self._check_limits(request)
        k = min(request.k, self.recommender.item_count)  # more than the catalogue holds means all of it
        self.metrics.recommend_modes.labels(request.mode).inc()
        if request.mode == "lexical":  # no model: it need not queue behind beam searches
            found = await run_in_threadpool(self.recommender.recommend, [request.query], k, "lexical")
            candidates = found[0]
        else:
            candidates = await self._decode_within_deadline(request.query, k, request.mode)
        rows = await run_in_threadpool(self._rows_for, candidates)
        items = [_recommended(rank, candidate, row) for rank, (candidate, row) in enumerate(rows, start=1)]
        timing_ms = (time.perf_counter() - started) * 1000.0
        return RecommendResponse(
            mode=request.mode, items=items, model=self.recommender.bundle_id, timing_ms=round(timing_ms, 2)
        )

    async def _decode_within_deadline(self, query: str, k: int, mode: str) -> list[Recommendation]:
        timeout_s = self.settings.request_timeout_s
        try:
            return await asyncio.wait_for(self.batcher.submit(query, k, mode), timeout_s)
        except TimeoutError:
            # wait_for cancelled the request: still queued, it is skipped; mid-decode, its answer is dropped.
            self.metrics.deadline_exceeded.inc()
            raise DeadlineExceeded(
                f"no answer within the {timeout_s:g} s deadline: the decoder is busy; retry shortly"
            ) from None

    async def change_items(self, raws: list[Any]) -> ChangeReport:
        """Apply a change set (items to add or replace, items to delete) all or nothing; served from the
        next request on. ``ChangeRejected`` (422) and ``ItemNotFound`` (404) before anything changes."""
        if self.updater is None:
            raise UpdatesUnavailable(
                "catalogue updates are off: set SEMID_ADMIN_TOKEN and restart the service"
            )
        changes = self.updater.parse(raws)
        # New items are embedded on the torch thread, between two decodes.
        report = await asyncio.get_running_loop().run_in_executor(
            self.torch_thread, self.updater.apply, changes, self.recommender.prepare, self.recommender.swap
        )
        self.rows.clear()  # after the database and the served IDs both hold the change
        for action in ("added", "updated", "deleted"):
            self.metrics.catalogue_changes.labels(action).inc(report.counts[action])
        if report.seconds:
            self.metrics.catalogue_change_latency.observe(report.seconds)
            self.metrics.catalogue_size.set(report.item_count)
            self.metrics.overlay_items.set(report.overlay_items)
            self.metrics.overlay_bytes.set(overlay_bytes(self.settings.bundle_dir))
            self._catalogue_problem = None  # the database holds what is served: it was just written
            self._catalogue_checked_at = time.monotonic()
        return report

    def item_by_semantic_id(self, text: str) -> ItemPublic:
        semantic_id = self.recommender.scheme.parse(text)  # InvalidSemanticId -> 422
        return ItemPublic(**_item_fields(self.repository.get_by_semantic_id(semantic_id)))

    def item_by_item_id(self, item_id: str) -> ItemPublic:
        return ItemPublic(**_item_fields(self.repository.get_by_item_id(item_id)))

    def readiness(self) -> Readiness:
        if not self.running:
            return Readiness(status="not ready", reason="the service is starting or stopping")
        if not self.repository.ping():
            return Readiness(status="not ready", reason="the catalogue database is unreachable")
        problem = self._catalogue_check()
        if problem is not None:
            return Readiness(status="not ready", bundle=self.recommender.bundle_id, reason=problem)
        return Readiness(
            status="ready", bundle=self.recommender.bundle_id, catalogue_items=self.recommender.item_count
        )

    def _catalogue_check(self) -> str | None:
        """Why the database no longer holds the served catalogue (None when it does), re-read at most
        every ``catalogue_check_interval_s``: IDs decoded from this bundle would miss or mislabel rows."""
        now = time.monotonic()
        if now - self._catalogue_checked_at < self.settings.catalogue_check_interval_s:
            return self._catalogue_problem
        try:
            state = self.repository.catalogue_state()
        except SQLAlchemyError as error:
            logger.warning("reading the catalogue state failed: %s", str(error).splitlines()[0])
            return "the catalogue database is unreachable"  # not cached: the next probe asks again
        served = self.recommender.catalogue_hash
        if state is None:
            problem: str | None = "the database holds no catalogue"
        elif state.version != served:
            problem = f"the database holds catalogue {state.version[:12]}, the bundle serves {served[:12]}"
        else:
            problem = None
        if problem is not None and self._catalogue_problem is None:
            logger.error("catalogue mismatch: %s", problem)
            self.rows.clear()  # what the database holds now is not what was read
        self._catalogue_checked_at, self._catalogue_problem = now, problem
        return problem

    def _check_limits(self, request: RecommendRequest) -> None:
        if request.k > self.settings.max_k:
            raise InvalidRequest(f"k: must be between 1 and {self.settings.max_k}, got {request.k}")
        if len(request.query) > self.settings.max_query_chars:
            raise InvalidRequest(
                f"query: at most {self.settings.max_query_chars} characters, got {len(request.query)}"
            )
        tokens = self.recommender.query_tokens(request.query)  # QueryRejected -> 422, before batching
        if tokens > self.settings.max_query_tokens:
            raise InvalidRequest(f"query: at most {self.settings.max_query_tokens} tokens, got {tokens}")

    def _rows_for(self, candidates: Sequence[Recommendation]) -> list[tuple[Recommendation, ItemRow]]:
        """Catalogue rows for the candidates in one query. A decoded ID without a row means the trie and
        the database disagree: it is counted (the metric must stay 0), logged and left out."""
        try:
            rows = self.rows.get_many([c.semantic_id for c in candidates])
        except ItemNotFound as error:
            self.metrics.invalid_decodes.inc(len(error.missing))
            logger.error("decoded IDs with no catalogue row: %s", ", ".join(error.missing[:10]))
            missing = set(error.missing)
            candidates = [c for c in candidates if c.semantic_id.compact not in missing]
            rows = self.rows.get_many([c.semantic_id for c in candidates])
        return list(zip(candidates, rows, strict=True))


def _updater(settings: Settings, recommender: Recommender, engine: Engine) -> CatalogueUpdater | None:
    """The catalogue updater, when an admin token is set; a bundle that cannot take new items (no item
    vectors or no RQ-VAE) serves read-only, with a warning saying why."""
    loaded = recommender.loaded
    if settings.admin_token is None or loaded is None:
        return None
    dense = recommender.ranker.dense
    if loaded.live is None or loaded.base_rows is None or dense is None:
        logger.warning("catalogue updates are off: bundle %s has no item vectors", recommender.bundle_id)
        return None
    try:
        updater = CatalogueUpdater(
            settings.bundle_dir,
            recommender.manifest,
            loaded.base_rows,
            loaded.base_vectors,
            loaded.live,
            dense.encoder,
            engine,
            max_items=settings.max_update_items,
        )
    except UpdatesUnavailable as error:
        logger.warning("catalogue updates are off: %s", error)
        return None
    # The same index, holding every row's tokens: the first change then re-reads only its own rows.
    ranker = recommender.ranker
    ranker.lexical = ranker.lexical.rebuilt(loaded.live.rows, loaded.live.content_hash)
    return updater


def _served_catalogue(repository: CatalogueRepository, engine: Engine) -> tuple[str, int]:
    """The catalogue hash and size the database holds; refuses a database that holds none."""
    try:
        state = repository.catalogue_state()
    except SQLAlchemyError as error:
        raise DatabaseUnavailable(
            f"cannot read the catalogue from {engine.url.render_as_string(hide_password=True)}: "
            f"{str(error).splitlines()[0]} (run `semid-service migrate` and `semid-service load-catalogue`)"
        ) from error
    if state is None:
        raise BundleMismatch(
            f"the database at {engine.url.render_as_string(hide_password=True)} holds no catalogue: "
            "run `semid-service load-catalogue --bundle <bundle dir>`"
        )
    return state.version, state.item_count


def _recommended(rank: int, found: Recommendation, row: ItemRow) -> RecommendedItem:
    return RecommendedItem(
        rank=rank,
        score=found.score,
        sources=list(found.sources),  # type: ignore[arg-type]  # "model" / "lexical" / "dense" by construction
        scores=ComponentScores(model=found.model_score, lexical=found.lexical_score, dense=found.dense_score),
        **_item_fields(row),
    )


def _item_fields(row: ItemRow) -> dict[str, Any]:
    return {
        "item_id": row.item_id,
        "title": row.title,
        "fields": row.fields,
        "semantic_id": row.semantic_id.compact,
        "semantic_id_tokens": row.semantic_id.tokens,
    }


def _new_torch_thread() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch")
