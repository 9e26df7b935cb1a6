"""Helpers: the moved layout, API calls from inside the host, script runs."""

from __future__ import annotations

import json

import pytest
from cg_molecule import group_vars

# This scenario moves the fleet contract (molecule.yml): every script, playbook and
# check must follow the base directory and the port set once in the inventory.
CONTRACT = group_vars("codegraph")
BASE = CONTRACT["codegraph_base_dir"]
BIN = f"{BASE}/bin"
URL = f"https://localhost:{CONTRACT['codegraph_port']}"


@pytest.fixture
def api(host, api_key):
    """api(method, path, body=None) -> parsed JSON, called with curl inside the host."""

    def call(method: str, path: str, body: dict | None = None):
        data = f"-H 'Content-Type: application/json' -d '{json.dumps(body)}'" if body else ""
        out = host.check_output(
            f"curl -sS --fail-with-body -X {method} -H 'Authorization: Bearer {api_key}' {data} "
            f"{URL}{path}"
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
