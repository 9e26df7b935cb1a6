"""Runs a play on this machine with the repository's ansible.cfg, for the tests that check a
role's controller-side tasks or templates without a test host."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

TOP = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# a host that is this machine, run by the tests' own Python (it has the controller's libraries)
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}


def run_play(
    tmp: Path, inventory: dict, play: str | list, *args: str, env: dict | None = None
) -> subprocess.CompletedProcess:
    """ansible-playbook of `play` (YAML text or a list of plays) against `inventory`, in `tmp`,
    without become; `args` are more command-line arguments, `env` more environment."""
    (tmp / "hosts.yml").write_text(yaml.safe_dump(inventory))
    text = play if isinstance(play, str) else yaml.safe_dump(play, sort_keys=False)
    (tmp / "play.yml").write_text(text)
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(tmp / "hosts.yml"), str(tmp / "play.yml"), *args],
        capture_output=True,
        text=True,
        check=False,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(TOP / "ansible.cfg"),
            "ANSIBLE_BECOME": "false",
            **(env or {}),
        },
    )
