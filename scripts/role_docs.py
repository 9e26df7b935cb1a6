#!/usr/bin/env python3
"""Write each role README's variable table from its meta/argument_specs.yml.

The table sits between <!-- BEGIN VARIABLES --> and <!-- END VARIABLES -->.
`--check` exits 1 (naming the READMEs) when a table is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from generated import write_or_check

TOP = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- BEGIN VARIABLES -->", "<!-- END VARIABLES -->"


def _shown(value: object) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text.removesuffix("...").strip().replace("|", "\\|")


def table(role: Path) -> str:
    specs = yaml.safe_load((role / "meta/argument_specs.yml").read_text())["argument_specs"]
    rows = ["| Variable | Default | What it does |", "|---|---|---|"]
    for name, option in specs["main"]["options"].items():
        description = option["description"]
        if isinstance(description, list):
            description = " ".join(description)
        if option.get("choices"):
            description += (
                " One of: " + ", ".join(f"`{choice}`" for choice in option["choices"]) + "."
            )
        rows.append(f"| `{name}` | `{_shown(option.get('default'))}` | {description} |")
    return "\n".join(rows)


def render(readme: Path) -> str:
    text = readme.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table(readme.parent)}\n{END}{tail}"


def main(argv: list[str]) -> int:
    readmes = sorted(TOP.glob("roles/*/README.md"))
    unmarked = [str(readme) for readme in readmes if BEGIN not in readme.read_text()]
    if unmarked:
        print(f"no {BEGIN} marker in: " + ", ".join(unmarked), file=sys.stderr)
        return 1
    return write_or_check({readme: render(readme) for readme in readmes}, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
