"""The side-by-side HTTP bench sends every query to both servers, the first alternating, in both modes."""

from __future__ import annotations

import json

import httpx

from bench.http_side_by_side import MODES, alternate, bursts, summary


def _clients(sent: list[tuple[str, str, str]]) -> dict[str, httpx.Client]:
    def client(side: str) -> httpx.Client:
        def answer(request: httpx.Request) -> httpx.Response:
            body = json.loads(request.content)
            sent.append((side, body["query"], body.get("mode", "hybrid")))
            return httpx.Response(200, json={"items": []})

        return httpx.Client(base_url="http://test", transport=httpx.MockTransport(answer))

    return {"before": client("before"), "after": client("after")}


def test_each_query_goes_to_both_sides_in_turn_in_every_mode() -> None:
    sent: list[tuple[str, str, str]] = []

    seconds = alternate(_clients(sent), ["q0", "q1", "q2", "q3"])
    timed = sent[6:]  # after three warm-up requests to each side
    # Query 0 goes to "before" first, query 1 to "after" first; hybrid, then generative.
    assert [side for side, _, _ in timed[:4]] == ["before", "after", "before", "after"]
    assert [side for side, _, _ in timed[4:8]] == ["after", "before", "after", "before"]
    assert [mode for _, _, mode in timed[:4]] == ["hybrid", "hybrid", "generative", "generative"]
    assert all(len(seconds[side][mode]) == 4 for side in seconds for mode in MODES)
    result = summary(seconds, {"before": [1.0], "after": [2.0, 3.0, 2.5]})
    assert set(result["after_over_before_p50"]) == set(MODES) and result["after"]["cold_start_s"] == 2.5


def test_bursts_send_every_client_s_requests_to_one_side_then_the_other() -> None:
    sent: list[tuple[str, str, str]] = []
    rates = bursts(_clients(sent), [f"q{i}" for i in range(50)], concurrency=3, rounds=2)
    assert [len(values) for values in rates.values()] == [2, 2] and all(
        r > 0 for v in rates.values() for r in v
    )
    sides = [side for side, _, _ in sent]
    assert len(sides) == 4 * 3 * 8  # two rounds, two sides, three clients of eight requests
    assert set(sides[:24]) == {"before"} and set(sides[24:48]) == {"after"}  # round 0: before first
    assert set(sides[48:72]) == {"after"} and set(sides[72:]) == {"before"}  # round 1: after first
