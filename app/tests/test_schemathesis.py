"""Property-based requests generated from the OpenAPI schema: never a 5xx, and every
answer with a documented status matches its documented body (codegraph.api.responses)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import API_KEY, start_server

pytestmark = pytest.mark.slow


def test_no_generated_request_gets_a_server_error(tmp_path):
    served = start_server(tmp_path, tls=False, server={"max_batch_nodes": 200})
    try:
        with served.client() as http:
            http.post("/nodes", json={"nodes": [{"id": "seed", "kind": "file", "name": "seed"}]})
        result = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                "run",
                f"{served.url}/openapi.json",
                "--header",
                f"Authorization: Bearer {API_KEY}",
                "--checks",
                "not_a_server_error,response_schema_conformance",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                "40",
                "--workers",
                "1",
                "--suppress-health-check",
                "all",
                "--seed",
                "20261126",
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
        assert "No issues found" in result.stdout or "passed" in result.stdout
        assert served.process.poll() is None
        assert "unexpected error" not in served.log()
    finally:
        served.stop()
