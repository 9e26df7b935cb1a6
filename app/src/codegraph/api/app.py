"""The FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI

from codegraph import __version__
from codegraph.api import (
    backup,
    errors,
    nodes,
    operations,
    parse,
    replication,
    responses,
    search,
    system,
    vector,
)
from codegraph.api.middleware import OPEN_PATHS, ServiceMiddleware
from codegraph.auth import ApiKeys
from codegraph.engine import Engine
from codegraph.parse.worker import ParseWorker

DESCRIPTION = """A code-graph store: nodes (files, modules, classes, functions) and
typed edges in RocksDB, with HNSW similarity search. Every endpoint but
`/health` needs `Authorization: Bearer <API key>`."""


def create_app(engine: Engine, keys: ApiKeys) -> FastAPI:
    """The API of engine; its limits come from the engine's [server] settings."""
    app = FastAPI(title="CodeGraph", version=__version__, description=DESCRIPTION)
    app.state.engine = engine
    app.state.keys = keys
    server = engine.settings.server
    app.state.parse_worker = ParseWorker(
        timeout=server.parse_timeout_seconds, memory_bytes=server.parse_memory_bytes
    )
    for module in (system, nodes, search, parse, vector, backup, operations, replication):
        app.include_router(module.router)
    errors.install(app)
    app.add_middleware(
        ServiceMiddleware,
        keys=keys,
        applied=engine.applied,
        read_wait=engine.settings.replication.read_wait_seconds,
        max_request_bytes=server.max_request_bytes,
        max_request_values=server.max_request_values,
    )
    _declare_bearer_auth(app)
    return app


def _declare_bearer_auth(app: FastAPI) -> None:
    """Tell the OpenAPI schema (and its clients) that a bearer key is required, and what
    a refusal looks like."""
    default_openapi = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = default_openapi()
            # FastAPI's own 422 body knows only the problem list; ours may be one message
            schema["components"]["schemas"]["HTTPValidationError"] = (
                responses.Refused.model_json_schema()
            )
            schema.setdefault("components", {})["securitySchemes"] = {
                "apiKey": {"type": "http", "scheme": "bearer"}
            }
            for path, operations in schema["paths"].items():
                for operation in operations.values():
                    operation["security"] = [] if path in OPEN_PATHS else [{"apiKey": []}]
                    if path not in OPEN_PATHS:
                        operation.setdefault("responses", {})["401"] = {
                            "description": "Missing or wrong API key"
                        }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
