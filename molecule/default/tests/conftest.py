"""Helpers for the testinfra tests of this scenario."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def api_key() -> str:
    return (Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "api_key").read_text().strip()
