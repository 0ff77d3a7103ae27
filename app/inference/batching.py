"""Micro-batching: queries that arrive together are decoded in one batched beam search.

One collector task takes requests off a bounded queue and hands batches to a single decode thread,
so the event loop never runs the model and health checks answer while a decode is under way. While a
batch decodes, newcomers wait in the queue and form the next batch; when the decoder is idle a batch
waits at most ``max_wait_s`` for company, unless the batch before it had none (one request, nothing
queued behind it): a lone client would only wait out the whole window on every request (5 ms of its
latency). Past ``max_queued`` waiting requests, ``submit`` raises ``Overloaded`` at once instead of
letting latency grow without bound.

Under steady load the clients a batch answered come straight back, a few milliseconds after the
decoder is free again: taken without them, the next batch holds only the requests that queued meanwhile
and they form the one after, so the batches halve (measured on the 2-core CPU at 8 clients: 2.4x one
client's throughput, where one decode of 8 queries costs 1.8x a decode of one). So the
next batch expects the last batch's requests back, with those that queued meanwhile, and waits for them
up to ``RETURN_WAIT_FRACTION`` of the last decode's time (``RETURN_WAIT_CAP_S`` at most); a client that
does not come back costs that once, and a request after a pause expects no one.

Requests are grouped by retrieval mode and beam count before decoding, so a request's answer does not
depend on what else happened to share its batch (more beams can change a beam search's result). A batch
whose decode fails is decoded again one request at a time, so a failure stays with the request that caused it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from app.metrics import Metrics

logger = logging.getLogger(__name__)

RETURN_WAIT_FRACTION = 0.25  # of the last batch's decode time, waited for its clients to come back
RETURN_WAIT_CAP_S = 0.1

Result = TypeVar("Result")
DecodeBatch = Callable[[list[str], int, str], list[list[Result]]]
"""``(queries, k, mode) -> results per query``: the blocking decode the batcher runs in its thread."""


class Overloaded(RuntimeError):
    """Too many requests are waiting for the decoder; the client should retry after ``retry_after_s``."""

    def __init__(self, queued: int, retry_after_s: int) -> None:
        super().__init__(f"the decoder has {queued} requests waiting; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class ServiceStopping(RuntimeError):
    """The service is shutting down and will not decode this request."""


@dataclass
class _Request(Generic[Result]):
    query: str
    k: int
    mode: str
    future: asyncio.Future[list[Result]]


class MicroBatcher(Generic[Result]):
    def __init__(
        self,
        decode: DecodeBatch[Result],
        *,
        beams_for: Callable[[int], int],
        max_batch_size: int,
        max_wait_s: float,
        max_queued: int,
        retry_after_s: int,
        metrics: Metrics,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        """``executor``: the one thread the decodes run on (default: a thread of its own); ``stop`` shuts
        it down."""
        self._decode = decode
        self._beams_for = beams_for
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.retry_after_s = retry_after_s
        self._metrics = metrics
        self._queue: asyncio.Queue[_Request[Result]] = asyncio.Queue(maxsize=max_queued)
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
        self._task: asyncio.Task[None] | None = None
        self._in_flight: list[_Request[Result]] = []
        self._last = _LastBatch()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._collect_forever(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        abandoned = self._in_flight
        while not self._queue.empty():
            abandoned.append(self._queue.get_nowait())
        for request in abandoned:
            if not request.future.done():
                request.future.set_exception(ServiceStopping("the service is shutting down"))
        self._metrics.queue_depth.set(0)
        await asyncio.to_thread(self._executor.shutdown, wait=True)  # let a running decode finish

    async def submit(self, query: str, k: int, mode: str = "") -> list[Result]:
        """The ``k`` best results for ``query`` in ``mode``, decoded alongside whatever arrives with it."""
        if self._task is None:
            raise ServiceStopping("the decoder is not running")
        future: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Request(query, k, mode, future))
        except asyncio.QueueFull:
            self._metrics.overloaded.inc()
            raise Overloaded(self._queue.qsize(), self.retry_after_s) from None
        self._metrics.queue_depth.set(self._queue.qsize())
        return await future

    async def _collect_forever(self) -> None:
        while True:
            batch = await self._next_batch()
            started = time.perf_counter()
            self._metrics.queue_depth.set(self._queue.qsize())
            self._in_flight = [request for request in batch if not request.future.cancelled()]  # gone: skip
            for group in self._group_by_beams(self._in_flight):
                await self._run_group(group)
            self._in_flight = []
            ended = time.perf_counter()
            self._last = _LastBatch(len(batch), self._queue.qsize(), ended - started, ended)

    async def _next_batch(self) -> list[_Request[Result]]:
        batch = [await self._queue.get()]
        now = time.perf_counter()
        alone = self._last.size <= 1 and self._last.queued_after == 0  # no sign of other clients
        company_deadline = now if alone else now + self.max_wait_s
        patience = min(RETURN_WAIT_CAP_S, RETURN_WAIT_FRACTION * self._last.decode_s)
        expected = 1
        if now - self._last.ended <= patience:  # the last batch's clients may still be on their way back
            expected = min(self.max_batch_size, self._last.size + self._last.queued_after)
        return_deadline = now + max(patience, self.max_wait_s)
        while len(batch) < self.max_batch_size:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            deadline = return_deadline if len(batch) < expected else company_deadline
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    def _group_by_beams(self, batch: Sequence[_Request[Result]]) -> list[list[_Request[Result]]]:
        groups: dict[tuple[str, int], list[_Request[Result]]] = defaultdict(list)
        for request in batch:
            groups[(request.mode, self._beams_for(request.k))].append(request)
        return list(groups.values())

    async def _run_group(self, group: list[_Request[Result]]) -> None:
        top_k = max(request.k for request in group)
        started = time.perf_counter()
        try:
            results = await self._decode_in_thread([request.query for request in group], top_k, group[0].mode)
        except Exception as error:
            if len(group) == 1:
                _fail(group[0], error)
                return
            # One poison query must not fail its neighbours: decode them one by one, so a failure is
            # that request's own error only.
            logger.warning("decoding a batch of %d failed; decoding its requests one by one", len(group))
            self._metrics.batch_splits.inc()
            for request in group:
                if not request.future.done():  # a waiter that gave up is not decoded again
                    await self._run_group([request])
            return
        self._metrics.decode_latency.observe(time.perf_counter() - started)
        self._metrics.batch_size.observe(len(group))
        for request, candidates in zip(group, results, strict=True):
            if not request.future.done():
                request.future.set_result(candidates[: request.k])

    async def _decode_in_thread(self, queries: list[str], top_k: int, mode: str) -> list[list[Result]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._decode, queries, top_k, mode)


@dataclass(frozen=True)
class _LastBatch:
    """What the collector knows of the batch before: its requests, those that queued while it decoded,
    how long it took, and when it ended."""

    size: int = 0
    queued_after: int = 0
    decode_s: float = 0.0
    ended: float = float("-inf")


def _fail(request: _Request[Result], error: Exception) -> None:
    """The request that caused ``error`` learns of it; the collector keeps going."""
    logger.error("decoding a query of %d characters failed", len(request.query), exc_info=error)
    if not request.future.done():
        request.future.set_exception(error)
