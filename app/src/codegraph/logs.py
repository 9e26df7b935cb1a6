"""Logging to stderr (the journal) and optionally a file that logrotate may move."""

from __future__ import annotations

import logging
import logging.handlers
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_LOGGERS = ("codegraph", "uvicorn", "uvicorn.error", "uvicorn.access")


def setup_logging(level: str, log_file: str = "") -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        # WatchedFileHandler reopens the file after logrotate moves it
        handlers.append(logging.handlers.WatchedFileHandler(log_file))
    formatter = logging.Formatter(FORMAT)
    for handler in handlers:
        handler.setFormatter(formatter)
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = handlers if name in ("codegraph", "uvicorn") else []
        logger.propagate = name not in ("codegraph", "uvicorn")
    set_level(level)


def set_level(level: str) -> None:
    for name in ("codegraph", "uvicorn"):
        logging.getLogger(name).setLevel(level.upper())
