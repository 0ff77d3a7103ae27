"""Every torch computation of the service runs on one thread: loading, warm-up and decodes (two long-lived
threads calling torch own two OpenMP teams, which on a 2-core CPU cost ~60 ms a query: app/service.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.inference.engine import Recommender
from app.main import create_app
from tests.helpers.service import service_settings
from tests.helpers.tiny_bundle import TinyBundle


def test_load_warm_up_and_decodes_share_one_thread(
    tiny_bundle: TinyBundle, catalogue_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: dict[str, set[int]] = {"load": set(), "warm_up": set(), "recommend": set()}

    def recorded(name: str, original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            threads[name].add(threading.get_ident())
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(Recommender, "load", classmethod(recorded("load", Recommender.load.__func__)))
    monkeypatch.setattr(Recommender, "warm_up", recorded("warm_up", Recommender.warm_up))
    monkeypatch.setattr(Recommender, "recommend", recorded("recommend", Recommender.recommend))
    app = create_app(service_settings(tiny_bundle, catalogue_url))
    with TestClient(app) as client:
        for mode in ("hybrid", "generative"):
            assert (
                client.post("/recommend", json={"query": "a film", "k": 3, "mode": mode}).status_code == 200
            )
    assert all(threads.values()), threads
    assert len(set().union(*threads.values())) == 1, threads
    assert threading.get_ident() not in threads["recommend"]
