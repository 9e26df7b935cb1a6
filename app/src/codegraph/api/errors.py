"""The one place where errors from below become HTTP status codes."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from codegraph import errors

log = logging.getLogger("codegraph.api")

STATUS = {
    errors.InvalidInput: 422,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.TooLarge: 413,
    errors.Unavailable: 503,
    errors.IntegrityError: 422,
    errors.DatabaseInUse: 503,
}


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.CodeGraphError)
    async def _known(request: Request, error: errors.CodeGraphError) -> JSONResponse:
        status = next(code for kind, code in STATUS.items() if isinstance(error, kind))
        return JSONResponse({"detail": str(error)}, status_code=status)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; see the service log"}, status_code=500)
