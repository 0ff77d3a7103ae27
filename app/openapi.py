"""The OpenAPI schema states the real contract: the configured limits, every error response, and
request examples (so "Try it out" starts from a working request, not ``"string"``).

The limits are settings, read at start-up, so they are written into the generated schema here rather
than into the pydantic models.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.settings import Settings

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
_RETRY = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}


def _error_responses(settings: Settings) -> dict[str, dict[str, str]]:
    return {
        "400": {"description": "The body could not be read as JSON of the declared content type."},
        "404": {"description": "`item_not_found`: no catalogue row has this ID."},
        "408": {
            "description": f"`request_timeout`: a body chunk stalled {settings.body_read_timeout_s:g} s."
        },
        "413": {"description": f"`payload_too_large`: the body is over {settings.max_body_bytes} bytes."},
        "422": {"description": "`invalid_request` or `invalid_semantic_id`: the detail says what to fix."},
        "500": {"description": "`internal_error`: a bug; the body and `X-Request-ID` carry a request id."},
        "503": {
            "description": "`overloaded`, `stopping` or `database_unavailable`; retry after `Retry-After`."
        },
        "504": {"description": f"`deadline_exceeded`: no answer within {settings.request_timeout_s:g} s."},
    }


# Which errors each operation can answer (path, method) -> status codes.
_OPERATION_ERRORS = {
    ("/recommend", "post"): ("400", "408", "413", "422", "500", "503", "504"),
    ("/items/{semantic_id}", "get"): ("404", "422", "500", "503"),
    ("/items/by-item-id/{item_id}", "get"): ("404", "500", "503"),
}

_RECOMMEND_EXAMPLES = {
    "query": {"summary": "A free-text query", "value": {"query": "a nineties sci-fi thriller", "k": 5}},
    "default_k": {"summary": "k defaults to 10", "value": {"query": "a heist film set in Los Angeles"}},
}


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Make ``app.openapi()`` return the generated schema with the contract written in."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            _state_limits(schema, settings)
            _state_errors(schema, settings)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _state_limits(schema: dict[str, Any], settings: Settings) -> None:
    request = schema["components"]["schemas"]["RecommendRequest"]["properties"]
    request["query"].update(
        minLength=1,
        maxLength=settings.max_query_chars,
        description=(
            f"Free text, not blank; at most {settings.max_query_chars} characters and "
            f"{settings.max_query_tokens} tokens (about 4 characters a token in English, fewer in CJK "
            "or emoji). Surrounding whitespace is trimmed."
        ),
        examples=["a nineties sci-fi thriller with Keanu Reeves"],
    )
    request["k"].update(maximum=settings.max_k, examples=[5])
    operation = schema["paths"]["/recommend"]["post"]
    operation["requestBody"]["content"]["application/json"]["examples"] = _RECOMMEND_EXAMPLES
    for parameter in schema["paths"]["/items/{semantic_id}"]["get"]["parameters"]:
        if parameter["name"] == "semantic_id":
            parameter["description"] = (
                "Compact form (`12-7-33-0`) or URL-encoded token form (`[SEM_START][SEM_0_12]...[SEM_END]`): "
                "ASCII digits, no leading zeros, no surrounding spaces."
            )
            parameter["example"] = "12-7-33-0"


def _state_errors(schema: dict[str, Any], settings: Settings) -> None:
    errors = _error_responses(settings)
    for (path, method), codes in _OPERATION_ERRORS.items():
        responses = schema["paths"][path][method]["responses"]
        for code in codes:
            response: dict[str, Any] = {**errors[code], "content": _ERROR}
            if code == "503" or code == "504":
                response["headers"] = _RETRY
            responses[code] = response
