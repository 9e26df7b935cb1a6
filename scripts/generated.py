"""Shared by the generators (role_docs.py, dashboards.py): write files, or check them."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(files: dict[Path, str], argv: list[str]) -> int:
    """Write each file, or with --check report (exit 1) those that are out of date."""
    stale = []
    for path, text in files.items():
        if not path.exists() or path.read_text() != text:
            if "--check" in argv:
                stale.append(path.name)
            else:
                path.write_text(text)
    if stale:
        print("out of date (run `make docs`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0
