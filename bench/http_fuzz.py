"""A property-based HTTP fuzz of the service: hypothesis strategies per route family, every answer
checked against the contract (no 5xx, a status the OpenAPI schema documents, a body of the documented
shape). ``bench.reliability_bench`` runs it against a real server; an equivalent of schemathesis, which
this virtualenv does not have.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from app.schemas import ErrorResponse, ItemPublic, RecommendResponse

Case = tuple[str, str, bytes | None]  # (method, path, JSON body or None)
HOSTILE_TEXT = [
    "\ud800",
    "Heat \udfff",
    "[SEM_END][REC][SEM_START][SEM_0_1]",
    "a\x00b",
    "\x00",
    "数" * 500,
    "😀" * 300,
    "x" * 2000,
    " \n\t ",
]


def _encode(body: Any) -> bytes:
    """ASCII JSON: lone surrogates travel escaped; infinities as the non-standard ``Infinity``."""
    return json.dumps(body).encode()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
_QUERY = st.one_of(st.text(max_size=80), st.sampled_from(HOSTILE_TEXT), _JSON)
_K = st.one_of(st.integers(-5, 80), _JSON)
_RECOMMEND = st.one_of(
    st.fixed_dictionaries({"query": _QUERY}, optional={"k": _K}),
    st.fixed_dictionaries({"query": _QUERY, "k": _K, "extra": _JSON}),
    _JSON,
).map(lambda body: ("POST", "/recommend", _encode(body)))
_PATH_TEXT = st.one_of(
    st.text(min_size=1, max_size=60), st.sampled_from(["0-0-0", "1-2-3", "٣-١-٢", "01-1-1"])
)
_SEMANTIC = _PATH_TEXT.map(lambda text: ("GET", f"/items/{quote(text, safe='')}", None))
_ITEM_ID = _PATH_TEXT.map(lambda text: ("GET", f"/items/by-item-id/{quote(text, safe='')}", None))
_OPERATIONS = st.tuples(
    st.sampled_from(["GET", "HEAD", "POST", "DELETE", "PATCH", "BREW", "OPTIONS"]),
    st.sampled_from(["/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/recommend", "/", "/x"]),
    st.none(),
)
# Shares of --fuzz-cases; the operations family is small and finite (56 method x path pairs), so it is
# run to exhaustion on top of them.
FUZZ_PLAN = {"recommend": (_RECOMMEND, 0.4), "semantic_id": (_SEMANTIC, 0.3), "item_id": (_ITEM_ID, 0.3)}
FUZZ_PLAN["operations"] = (_OPERATIONS, 0.05)


_OUTSIDE_SCHEMA = {"/docs", "/metrics", "/openapi.json"}  # served, but not API operations
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def _operation(openapi: dict[str, Any], method: str, path: str) -> str | None:
    """The schema's path template that ``path`` falls under, for documented statuses."""
    if path.startswith("/items/by-item-id/"):
        return "/items/by-item-id/{item_id}"
    if path.startswith("/items/"):
        return "/items/{semantic_id}"
    return path if path in openapi["paths"] else None


def check(openapi: dict[str, Any], case: Case, response: httpx.Response) -> str | None:
    """What is wrong with ``response`` to ``case``, or None when it keeps the contract."""
    method, path, _ = case
    status = response.status_code
    if status >= 500:
        return f"{status} {response.text[:200]}"
    if method == "HEAD":  # no body to check
        return None
    if method == "GET" and path in _OUTSIDE_SCHEMA:
        return None if status == 200 else f"unexpected {status}"
    template = _operation(openapi, method, path)
    operation = openapi["paths"].get(template or "", {}).get(method.lower())
    if operation is None:  # an unknown route or method: a JSON 404 / 405
        if method not in _METHODS and status == 400:
            return None  # uvicorn itself refuses some made-up methods before the app sees them
        return None if status in (404, 405) and _fits(ErrorResponse, response) else f"unexpected {status}"
    if str(status) not in operation["responses"]:
        return f"undocumented status {status} for {method} {template}"
    if status == 200 and template == "/recommend":
        return None if _fits(RecommendResponse, response) else "200 body is not a RecommendResponse"
    if status == 200 and template.startswith("/items"):
        return None if _fits(ItemPublic, response) else "200 body is not an ItemPublic"
    if status >= 400 and not _fits(ErrorResponse, response):
        return f"{status} body is not an ErrorResponse"
    return None


def _fits(model: type[BaseModel], response: httpx.Response) -> bool:
    try:
        model.model_validate(response.json())
    except (ValueError, ValidationError):
        return False
    return True


def fuzz(base_url: str, cases: int, seed: int) -> dict[str, Any]:
    """Hypothesis-generated cases per route family, sequentially; counts and every violation."""
    results: dict[str, Any] = {"cases": 0, "by_route": {}, "statuses": Counter(), "violations": []}
    with httpx.Client(base_url=base_url, timeout=60) as client:
        openapi = client.get("/openapi.json").json()
        for name, (strategy, share) in FUZZ_PLAN.items():
            sent = _fuzz_family(client, openapi, strategy, int(cases * share), seed, results)
            results["by_route"][name] = sent
    results["statuses"] = dict(sorted(results["statuses"].items()))
    return results


def _fuzz_family(
    client: httpx.Client, openapi: dict[str, Any], strategy: Any, examples: int, seed: int, results: Any
) -> int:
    sent = 0

    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def one(case: Case) -> None:
        nonlocal sent
        method, path, body = case
        if body is None:
            response = client.request(method, path)
        else:
            response = client.request(
                method, path, content=body, headers={"content-type": "application/json"}
            )
        sent += 1
        results["cases"] += 1
        results["statuses"][response.status_code] += 1
        problem = check(openapi, case, response)
        if problem is not None:
            results["violations"].append({"method": method, "path": path[:120], "problem": problem})

    random.seed(seed)
    one()
    return sent
