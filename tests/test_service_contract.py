"""The codegraph role's knowledge of the service agrees with the service's own settings.

The role checks variables in preflight (before a host is touched) against lists and
bounds of its own; the service validates the same values in `codegraph.settings`.
These tests fail when the two drift apart.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

import yaml

from codegraph import settings

ROLE = Path(__file__).resolve().parent.parent / "roles" / "codegraph"
ROLE_VARS = yaml.safe_load((ROLE / "vars/main.yml").read_text())
SPECS = yaml.safe_load((ROLE / "meta/argument_specs.yml").read_text())["argument_specs"]
PREFLIGHT = (ROLE / "tasks/preflight.yml").read_text()
# the fleet contract's checks (ports, base directory)
CONTRACT = (ROLE.parent / "codegraph_common/tasks/main.yml").read_text()


def _bounds(field) -> tuple[float | None, float | None]:
    """A pydantic field's inclusive bounds (ge/le), as the role's checks write them."""
    low = high = None
    for rule in field.metadata:
        low = getattr(rule, "ge", low)
        high = getattr(rule, "le", high)
    return low, high


def test_the_profile_names_are_the_services():
    names = list(typing.get_args(settings.ProfileName))
    assert sorted(ROLE_VARS["_codegraph_profiles"]) == sorted(names)
    assert sorted(SPECS["main"]["options"]["codegraph_rocksdb_profile"]["choices"]) == sorted(names)
    assert sorted(settings.PROFILES) == sorted(names)


def test_the_override_keys_are_the_services():
    overridable = [
        name
        for name, field in settings.DatabaseSettings.model_fields.items()
        if field.default is None and name in settings.BALANCED
    ]
    assert ROLE_VARS["_codegraph_override_keys"] == list(settings.BALANCED) == overridable


def test_the_server_limit_keys_are_service_settings():
    fields = settings.ServerSettings.model_fields
    unknown = set(ROLE_VARS["_codegraph_server_limit_keys"]) - set(fields)
    assert not unknown, f"the role lets codegraph_server_limits set unknown keys: {unknown}"
    for name in ROLE_VARS["_codegraph_server_limit_keys"]:
        assert fields[name].annotation in (int, float), name  # the role accepts numbers


def test_the_vector_dimension_bounds_are_the_services():
    low, high = _bounds(settings.VectorSettings.model_fields["dimension"])
    found = re.search(r"codegraph_vector_dimension \| int in range\((\d+), (\d+)\)", PREFLIGHT)
    assert found, "preflight no longer checks codegraph_vector_dimension with range()"
    assert (int(found[1]), int(found[2]) - 1) == (low, high)


def test_the_port_bounds_are_the_services():
    for name in ("port", "metrics_port"):
        assert _bounds(settings.ServerSettings.model_fields[name]) == (1, 65535), name
    assert "codegraph_port | int in range(1, 65536)" in CONTRACT
