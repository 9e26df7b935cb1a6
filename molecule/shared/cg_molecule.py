"""What every scenario's tests share: the test API key, the values a scenario's
molecule.yml gives its hosts, and the project's playbooks run against a scenario.

Loaded as a pytest plugin by the verifier (.config/molecule/config.yml), so its
fixtures (`api_key`) serve every scenario; the helpers are imported by name.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

TOP = Path(__file__).resolve().parents[2]
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
INVENTORY = EPHEMERAL / "inventory"
# ansible and ansible-playbook as the tests run them: output without colour codes
ANSIBLE_ENV = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}


@pytest.fixture(scope="session")
def api_key() -> str:
    """The key the scenario's converge generated (a password lookup in the ephemeral folder)."""
    return (EPHEMERAL / "api_key").read_text().strip()


def group_vars(group: str) -> dict:
    """The inventory values this scenario's molecule.yml gives a group."""
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "molecule.yml")
    inventory = yaml.safe_load(scenario.read_text()).get("provisioner", {}).get("inventory", {})
    return inventory.get("group_vars", {}).get(group, {})


def playbook(
    name: str, *args: str, secret: str, timeout: int = 1800
) -> subprocess.CompletedProcess:
    """Run one of the project's playbooks against this scenario's inventory; `secret`
    (the API key) must not appear in its output."""
    result = subprocess.run(
        ["ansible-playbook", "-i", str(INVENTORY), str(TOP / "playbooks" / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=ANSIBLE_ENV,
    )
    assert secret not in result.stdout + result.stderr, f"{name} printed the API key"
    return result
