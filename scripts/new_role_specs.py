#!/usr/bin/env python3
"""Write a role's meta/argument_specs.yml from its defaults and a description per variable.

A helper for authoring (not run in CI): `tests/test_roles.py` then keeps defaults,
specs and README in step. Usage: new_role_specs.py ROLE DESCRIPTIONS.yml
where DESCRIPTIONS.yml maps each variable to {description: ..., choices: [...]?}
and a `_role: {short_description: ...}` entry.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

TYPES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def _string(dumper, value):
    quoted = "{{" in value or value.strip() != value or value == "" or value[:1].isdigit()
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if quoted else None)


_Dumper.add_representer(str, _string)


def main(role: str, descriptions_file: str) -> None:
    root = Path(__file__).resolve().parent.parent / "roles" / role
    defaults = yaml.safe_load((root / "defaults/main.yml").read_text())
    notes = yaml.safe_load(Path(descriptions_file).read_text())
    options = {}
    for name, value in defaults.items():
        option = {"type": TYPES[type(value)], "default": value}
        if isinstance(value, list):
            option["elements"] = "dict" if value and isinstance(value[0], dict) else "str"
        option.update(notes[name])
        options[name] = option
    spec = {"argument_specs": {"main": {**notes["_role"], "options": options}}}
    text = yaml.dump(spec, Dumper=_Dumper, sort_keys=False, width=100, default_flow_style=False)
    (root / "meta/argument_specs.yml").write_text("---\n" + text)


if __name__ == "__main__":
    main(*sys.argv[1:3])
