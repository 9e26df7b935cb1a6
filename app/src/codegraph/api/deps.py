"""What routers get from the application: the engine."""

from typing import Annotated

from fastapi import Depends, Request

from codegraph.engine import Engine


def _engine(request: Request) -> Engine:
    return request.app.state.engine


EngineDep = Annotated[Engine, Depends(_engine)]
