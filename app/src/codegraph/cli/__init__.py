"""Console scripts: codegraph-api (the service) and codegraph-admin (offline tasks)."""

from __future__ import annotations

import argparse
import sys

from codegraph import __version__
from codegraph.settings import ConfigError, Settings, load_settings

DEFAULT_CONFIG = "/opt/codegraph/config/codegraph.toml"


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options both commands share: --config and --version."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--config", default=DEFAULT_CONFIG, help="the TOML configuration (default: %(default)s)"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def settings_or_none(prog: str, path: str) -> Settings | None:
    """The settings, or None after printing the error that names the key."""
    try:
        return load_settings(path)
    except ConfigError as error:
        print(f"{prog}: {path}: configuration error: {error}", file=sys.stderr)
        return None
