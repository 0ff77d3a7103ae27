"""The side-by-side HTTP bench sends every query to both servers, the first alternating, in both modes."""

from __future__ import annotations

import json

import httpx

from bench.http_side_by_side import MODES, alternate, summary


def test_each_query_goes_to_both_sides_in_turn_in_every_mode() -> None:
    sent: list[tuple[str, str, str]] = []

    def client(side: str) -> httpx.Client:
        def answer(request: httpx.Request) -> httpx.Response:
            body = json.loads(request.content)
            sent.append((side, body["query"], body.get("mode", "hybrid")))
            return httpx.Response(200, json={"items": []})

        return httpx.Client(base_url="http://test", transport=httpx.MockTransport(answer))

    seconds = alternate({"before": client("before"), "after": client("after")}, ["q0", "q1", "q2", "q3"])
    timed = sent[6:]  # after three warm-up requests to each side
    # Query 0 goes to "before" first, query 1 to "after" first; hybrid, then generative.
    assert [side for side, _, _ in timed[:4]] == ["before", "after", "before", "after"]
    assert [side for side, _, _ in timed[4:8]] == ["after", "before", "after", "before"]
    assert [mode for _, _, mode in timed[:4]] == ["hybrid", "hybrid", "generative", "generative"]
    assert all(len(seconds[side][mode]) == 4 for side in seconds for mode in MODES)
    result = summary(seconds, {"before": [1.0], "after": [2.0, 3.0, 2.5]})
    assert set(result["after_over_before_p50"]) == set(MODES) and result["after"]["cold_start_s"] == 2.5
