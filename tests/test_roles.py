"""Every role keeps its defaults, its argument specs and its README in step."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

TOP = Path(__file__).resolve().parent.parent
ROLES = sorted(path for path in (TOP / "roles").iterdir() if path.is_dir())


def _yaml(path: Path):
    return yaml.safe_load(path.read_text()) or {}


@pytest.mark.parametrize("role", ROLES, ids=lambda path: path.name)
def test_role_has_the_standard_shape(role):
    for part in (
        "defaults/main.yml",
        "meta/main.yml",
        "meta/argument_specs.yml",
        "tasks/main.yml",
        "README.md",
    ):
        assert (role / part).is_file(), f"{role.name} lacks {part}"


@pytest.mark.parametrize("role", ROLES, ids=lambda path: path.name)
def test_defaults_and_argument_specs_agree(role):
    defaults = _yaml(role / "defaults/main.yml")
    options = _yaml(role / "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    only_defaults, only_specs = set(defaults) - set(options), set(options) - set(defaults)
    assert not only_defaults and not only_specs, f"defaults: {only_defaults}, specs: {only_specs}"
    for name, value in defaults.items():
        assert options[name].get("default") == value, f"{role.name}: {name} default differs"
        assert options[name].get("description"), f"{role.name}: {name} has no description"
        # codegraph_common holds the fleet contract every role reads: codegraph_* names
        prefix = "codegraph_" if role.name == "codegraph_common" else role.name + "_"
        public = name.startswith(prefix) or role.name == "debian_packages"
        assert public, f"{name}: public variables are prefixed with the role name"


@pytest.mark.parametrize("role", ROLES, ids=lambda path: path.name)
def test_role_vars_are_internal_names_only(role):
    """Role vars beat the inventory: a public name there would silently ignore the
    user's value (codegraph once kept codegraph_config_dir while codegraph_runbook
    followed the inventory's)."""
    for path in sorted((role / "vars").glob("*.yml")):
        public = [name for name in _yaml(path) if not name.startswith("_")]
        assert not public, f"{path.relative_to(TOP)} defines public names {public}"


@pytest.mark.parametrize("role", ROLES, ids=lambda path: path.name)
def test_readme_lists_every_variable(role):
    """With its default: the table is generated from the specs, which match the defaults."""
    readme = (role / "README.md").read_text()
    for name in _yaml(role / "defaults/main.yml"):
        assert f"| `{name}` |" in readme, f"{role.name}/README.md does not list {name}"


def test_role_release_version_is_the_app_version():
    app = tomllib.loads((TOP / "app/pyproject.toml").read_text())["project"]["version"]
    assert _yaml(TOP / "roles/codegraph/defaults/main.yml")["codegraph_version"] == app


def test_readme_variable_tables_are_generated_from_the_specs():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, str(TOP / "scripts/role_docs.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
