"""The micro-batcher: requests that arrive together share a decode, the queue is bounded, and a
request's answer never depends on its batch-mates' k."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from app.inference.batching import MicroBatcher, Overloaded, ServiceStopping
from app.metrics import Metrics
from semantic_ids.decoding import Candidate
from semantic_ids.ids import SemanticId

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class RecordingDecoder:
    """A deterministic decode: query ``q`` gets IDs (len(q), i) for i < k, scores falling with i.

    It records every call, and can hold the decode thread until ``release`` is set."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls: list[tuple[list[str], int]] = []
        self.modes: list[str] = []
        self.thread_names: set[str] = set()
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, queries: list[str], k: int, mode: str = "") -> list[list[Candidate]]:
        self.calls.append((list(queries), k))
        self.modes.append(mode)
        self.thread_names.add(threading.current_thread().name)
        self.started.set()
        self.release.wait(10)
        time.sleep(self.delay_s)
        if "boom" in queries:
            raise RuntimeError("decoder failed")
        return [[Candidate(SemanticId((len(q), i)), 1.0 / (i + 1)) for i in range(k)] for q in queries]


def make_batcher(
    decoder: RecordingDecoder, metrics: Metrics | None = None, **overrides: float
) -> MicroBatcher:
    options: dict[str, float] = {"max_batch_size": 8, "max_wait_s": 0.05, "max_queued": 64} | overrides
    return MicroBatcher(
        decoder,
        beams_for=lambda k: max(10, k),
        max_batch_size=int(options["max_batch_size"]),
        max_wait_s=options["max_wait_s"],
        max_queued=int(options["max_queued"]),
        retry_after_s=3,
        metrics=metrics or Metrics(),
    )


async def test_requests_arriving_together_share_one_decode_off_the_event_loop() -> None:
    decoder = RecordingDecoder()
    batcher = make_batcher(decoder)
    await batcher.start()
    results = await asyncio.gather(*(batcher.submit("q" * n, 3) for n in range(1, 6)))
    await batcher.stop()
    assert decoder.calls == [(["q", "qq", "qqq", "qqqq", "qqqqq"], 3)]
    assert [r[0].semantic_id.codes for r in results] == [(n, 0) for n in range(1, 6)]
    assert all(name.startswith("decode") for name in decoder.thread_names)


async def test_batches_are_capped_at_max_size() -> None:
    decoder = RecordingDecoder()
    batcher = make_batcher(decoder, max_batch_size=2)
    await batcher.start()
    await asyncio.gather(*(batcher.submit(f"q{n}", 1) for n in range(5)))
    await batcher.stop()
    assert [len(queries) for queries, _ in decoder.calls] == [2, 2, 1]


async def test_clients_coming_back_after_their_answer_rejoin_one_batch() -> None:
    # Six clients in a loop, each back 5-35 ms after its answer (the spread of real clients): with only
    # a 5 ms wait for company the batches split, the first to return in one, the rest in the next.
    decoder = RecordingDecoder(delay_s=0.2)
    batcher = make_batcher(decoder, max_wait_s=0.005)
    await batcher.start()

    async def client(index: int) -> None:
        for _ in range(4):
            await batcher.submit(f"q{index}", 1)
            await asyncio.sleep(0.005 + 0.006 * index)

    await asyncio.gather(*(client(index) for index in range(6)))
    await batcher.stop()
    assert [len(queries) for queries, _ in decoder.calls] == [6, 6, 6, 6]


async def test_a_request_after_a_pause_waits_for_no_one() -> None:
    decoder = RecordingDecoder(delay_s=0.2)
    batcher = make_batcher(decoder, max_wait_s=0.005)
    await batcher.start()
    await asyncio.gather(*(batcher.submit(f"q{n}", 1) for n in range(6)))
    await asyncio.sleep(0.1)  # longer than the wait for returning clients (a quarter of 0.2 s)
    began = time.perf_counter()
    await batcher.submit("alone", 1)
    waited = time.perf_counter() - began - decoder.delay_s
    await batcher.stop()
    assert [len(queries) for queries, _ in decoder.calls] == [6, 1]
    assert waited < 0.04, waited


async def test_a_lone_client_never_waits_for_company() -> None:
    decoder = RecordingDecoder()
    batcher = make_batcher(decoder, max_wait_s=0.2)
    await batcher.start()
    began = time.perf_counter()
    for n in range(5):
        await batcher.submit(f"q{n}", 1)
    elapsed = time.perf_counter() - began
    await batcher.stop()
    assert [len(queries) for queries, _ in decoder.calls] == [1] * 5
    assert elapsed < 0.2, elapsed  # five waits for company would take a second


async def test_each_request_gets_its_own_k_and_beam_groups_are_decoded_apart() -> None:
    decoder = RecordingDecoder()
    batcher = make_batcher(decoder)
    await batcher.start()
    small, medium, large = await asyncio.gather(
        batcher.submit("a", 2), batcher.submit("b", 7), batcher.submit("c", 30)
    )
    await batcher.stop()
    assert (len(small), len(medium), len(large)) == (2, 7, 30)
    # k=2 and k=7 both use 10 beams (one decode, top 7, each cut to its own k); k=30 needs 30 beams.
    assert sorted(decoder.calls) == [(["a", "b"], 7), (["c"], 30)]


async def test_modes_are_decoded_apart_each_with_its_own_mode() -> None:
    decoder = RecordingDecoder()
    batcher = make_batcher(decoder)
    await batcher.start()
    await asyncio.gather(
        batcher.submit("a", 3, "hybrid"),
        batcher.submit("b", 3, "generative"),
        batcher.submit("c", 3, "hybrid"),
    )
    await batcher.stop()
    calls = sorted(zip(decoder.modes, decoder.calls, strict=True))
    assert calls == [("generative", (["b"], 3)), ("hybrid", (["a", "c"], 3))]


async def test_a_full_queue_refuses_at_once_with_retry_after() -> None:
    decoder = RecordingDecoder()
    decoder.release.clear()  # hold the decode thread so the queue fills up behind it
    batcher = make_batcher(decoder, max_batch_size=1, max_queued=2, max_wait_s=0)
    await batcher.start()
    first = asyncio.create_task(batcher.submit("first", 1))
    await asyncio.to_thread(decoder.started.wait, 5)
    waiting = [asyncio.create_task(batcher.submit(f"w{n}", 1)) for n in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded, match="retry in 3 s") as refused:
        await batcher.submit("one too many", 1)
    assert refused.value.retry_after_s == 3
    decoder.release.set()
    assert len(await first) == 1
    assert all(len(r) == 1 for r in await asyncio.gather(*waiting))
    await batcher.stop()


async def test_a_failed_decode_fails_only_its_own_request_and_the_batcher_keeps_serving() -> None:
    decoder = RecordingDecoder()
    metrics = Metrics()
    batcher = make_batcher(decoder, metrics)
    await batcher.start()
    poison, fine, other = await asyncio.gather(
        batcher.submit("boom", 1),
        batcher.submit("fine", 2),
        batcher.submit("other", 1),
        return_exceptions=True,
    )
    assert isinstance(poison, RuntimeError)
    assert isinstance(fine, list) and len(fine) == 2 and fine[0].semantic_id.codes == (4, 0)
    assert isinstance(other, list) and len(other) == 1
    # the batch failed, then each request was decoded alone
    assert [queries for queries, _ in decoder.calls] == [
        ["boom", "fine", "other"],
        ["boom"],
        ["fine"],
        ["other"],
    ]
    assert metrics.batch_splits._value.get() == 1
    assert len(await batcher.submit("later", 1)) == 1
    await batcher.stop()


async def test_cancelled_requests_are_not_decoded() -> None:
    decoder = RecordingDecoder()
    decoder.release.clear()
    batcher = make_batcher(decoder, max_batch_size=1, max_wait_s=0)
    await batcher.start()
    first = asyncio.create_task(batcher.submit("first", 1))
    await asyncio.to_thread(decoder.started.wait, 5)
    abandoned = asyncio.create_task(batcher.submit("abandoned", 1))
    await asyncio.sleep(0)
    abandoned.cancel()
    decoder.release.set()
    await first
    await batcher.submit("next", 1)
    await batcher.stop()
    assert [queries for queries, _ in decoder.calls] == [["first"], ["next"]]


async def test_stopping_fails_waiters_instead_of_leaving_them_hanging() -> None:
    decoder = RecordingDecoder()
    decoder.release.clear()
    batcher = make_batcher(decoder, max_batch_size=1, max_wait_s=0)
    await batcher.start()
    first = asyncio.create_task(batcher.submit("first", 1))
    await asyncio.to_thread(decoder.started.wait, 5)
    queued = asyncio.create_task(batcher.submit("queued", 1))
    await asyncio.sleep(0)
    threading.Timer(0.2, decoder.release.set).start()  # stop() waits for the running decode
    started = time.perf_counter()
    await batcher.stop()
    assert time.perf_counter() - started < 5
    for task in (first, queued):
        with pytest.raises(ServiceStopping):
            await task
    with pytest.raises(ServiceStopping):
        await batcher.submit("after stop", 1)
