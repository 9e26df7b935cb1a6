"""The one place where errors from below become HTTP status codes."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from codegraph import errors

log = logging.getLogger("codegraph.api")

STATUS = {
    errors.InvalidInput: 422,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.TooLarge: 413,
    errors.Unavailable: 503,
    errors.OutcomeUnknown: 504,
    errors.IntegrityError: 422,
    errors.DatabaseInUse: 503,
}


SHOWN_ERRORS = 10  # a 422 lists this many problems, then counts the rest
_SHOWN_CHARS = 200  # of each message and path element


def _short(value: object) -> object:
    if isinstance(value, str) and len(value) > _SHOWN_CHARS:
        return value[:_SHOWN_CHARS] + "..."
    return value


def validation_detail(error: RequestValidationError) -> dict:
    """The first few problems, each with where and what (never the input itself: it
    can be megabytes, or nested too deep to write back), and how many there were."""
    problems = error.errors()
    shown = []
    for problem in problems[:SHOWN_ERRORS]:
        item = {
            "loc": [_short(part) for part in problem["loc"]],
            "msg": _short(problem["msg"]),
            "type": problem["type"],
        }
        if problem.get("ctx") and problem["type"] != "value_error":  # (msg says it already)
            item["ctx"] = {key: _short(str(value)) for key, value in problem["ctx"].items()}
        shown.append(item)
    return {"detail": shown, "error_count": len(problems)}


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_detail(error), status_code=422)

    @app.exception_handler(errors.CodeGraphError)
    async def _known(request: Request, error: errors.CodeGraphError) -> JSONResponse:
        status = next(code for kind, code in STATUS.items() if isinstance(error, kind))
        retry_after = getattr(error, "retry_after", None)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        body = {"detail": str(error)}
        if isinstance(error, errors.OutcomeUnknown):  # not "failed": it may be applied
            body["outcome"] = "unknown"
        elif isinstance(error, errors.Withdrawn):  # settled by the log: never applied
            body["outcome"] = "not_applied"
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; see the service log"}, status_code=500)
