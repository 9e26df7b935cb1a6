"""Helpers: the test API key, API calls from inside the host, script runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

BIN = "/opt/codegraph/bin"


@pytest.fixture(scope="session")
def api_key() -> str:
    return (Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "api_key").read_text().strip()


@pytest.fixture
def api(host, api_key):
    """api(method, path, body=None) -> parsed JSON, called with curl inside the host."""

    def call(method: str, path: str, body: dict | None = None):
        data = f"-H 'Content-Type: application/json' -d '{json.dumps(body)}'" if body else ""
        out = host.check_output(
            f"curl -sS --fail-with-body -X {method} -H 'Authorization: Bearer {api_key}' {data} "
            f"https://localhost:8080{path}"
        )
        return json.loads(out) if out else None

    return call


@pytest.fixture
def script(host, api_key):
    """script(name, *args) -> the command result; the key must never be printed."""

    def run(name: str, *args: str):
        quoted = " ".join(f"'{arg}'" for arg in args)
        result = host.run(f"{BIN}/{name} {quoted}")
        assert api_key not in result.stdout + result.stderr
        return result

    return run


def summary(result) -> dict[str, str]:
    """The key=value pairs of a script's SUMMARY line."""
    line = next(line for line in reversed(result.stdout.splitlines()) if line.startswith("SUMMARY"))
    return dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)
