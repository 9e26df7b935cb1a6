"""The fleet scenario's controller, as an operator has it (docs/testing.md):

- the collection built from this checkout and installed from its tarball, with its one
  dependency (community.crypto, from the ansible package: there is no Galaxy here);
- a virtualenv outside the repository with only the pinned ansible-core and what the
  collection declares it needs (meta/ee-requirements.txt);
- an inventory of its own (molecule/fleet/consumer/): Ansible reaches the hosts over SSH
  on a management network, while the fleet talks on podman's network, the hosts' default
  route; no fact cache, Ansible's own strategy;
- the release published beside this checkout (artifacts/, as `make release` builds it),
  named by path in the inventory (codegraph_release_url).

    python consumer.py prepare    the management network and the SSH key (molecule prepare)
    python consumer.py converge   codegraph.ops.site from scratch (molecule converge)

The tests import it: run() runs a playbook of the installed collection.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

TOP = Path(__file__).resolve().parents[2]
SOURCE = Path(__file__).resolve().parent / "consumer"
# the operator's own folder: its ansible.cfg, inventory and installed collections
HOME = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "consumer"
INVENTORY = HOME / "inventory"
HOSTS = yaml.safe_load((SOURCE / "inventory/hosts.yml").read_text())
GALAXY = yaml.safe_load((TOP / "galaxy.yml").read_text())
# where the fleet's playbooks keep their controller state (codegraph_controller_dir)
STATE = INVENTORY / ".codegraph"
PUBLISHED = TOP / "artifacts"  # where the project publishes its releases

MGMT_NETWORK, MGMT_SUBNET, MGMT_GATEWAY = "cg-fleet-mgmt", "10.89.210.0/24", "10.89.210.1"
_CORE = re.search(r"^ansible-core==\S+", (TOP / "requirements.txt").read_text(), re.M).group(0)
_NEEDS = (TOP / "meta/ee-requirements.txt").read_text()
VENV = (
    Path.home()
    / ".cache/codegraph-ops"
    / f"consumer-venv-{hashlib.sha256((_CORE + _NEEDS).encode()).hexdigest()[:12]}"
)


def hosts() -> dict[str, str]:
    """Each host's inventory name and the management address Ansible reaches it on."""
    found = {}
    for group in HOSTS["all"]["children"].values():
        for name, values in (group.get("hosts") or {}).items():
            found.setdefault(name, (values or {}).get("ansible_host"))
    return {name: address for name, address in found.items() if address}


def _sh(*argv: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if check and result.returncode != 0:
        output = result.stdout[-3000:] + result.stderr[-3000:]
        raise SystemExit(f"{' '.join(argv)} failed:\n{output}")
    return result


def no_default_route_on_the_management_network(name: str) -> None:
    """Only the fleet's network routes beyond its subnet: a host cut off from it is cut
    off (podman gives every network a default route; removed in the host's namespace)."""
    pid = _sh("podman", "inspect", "-f", "{{.State.Pid}}", name).stdout.strip()
    _sh("nsenter", "-t", pid, "-n", "ip", "route", "del", "default", "via", MGMT_GATEWAY,
        check=False)  # fmt: skip


def prepare() -> None:
    """The management network on every host, and this controller's SSH key on it."""
    if _sh("podman", "network", "exists", MGMT_NETWORK, check=False).returncode != 0:
        _sh("podman", "network", "create", "--subnet", MGMT_SUBNET, MGMT_NETWORK)
    for name, address in hosts().items():
        networks = _sh("podman", "inspect", "-f", "{{json .NetworkSettings.Networks}}", name)
        if MGMT_NETWORK not in json.loads(networks.stdout):
            _sh("podman", "network", "connect", "--ip", address, MGMT_NETWORK, name)
        no_default_route_on_the_management_network(name)
    shutil.rmtree(HOME, ignore_errors=True)
    shutil.copytree(SOURCE, HOME)
    key = INVENTORY / ".secrets/ssh/id_ed25519"
    key.parent.mkdir(parents=True, mode=0o700)
    _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cg-fleet-consumer", "-f", str(key))
    public = key.with_suffix(".pub").read_text()
    install = "mkdir -p -m 700 /root/.ssh && cat > /root/.ssh/authorized_keys"
    for name, address in hosts().items():
        _sh("podman", "exec", "-i", name, "sh", "-c", install, input=public)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection((address, 22), timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name}: no SSH on {address}:22") from None
                time.sleep(1)


def _venv() -> Path:
    """The operator's virtualenv (kept between runs, made again when what it holds changes)."""
    if not (VENV / ".installed").exists():
        shutil.rmtree(VENV, ignore_errors=True)
        _sh("python3", "-m", "venv", str(VENV))  # the machine's Python, as an operator's
        _sh(str(VENV / "bin/pip"), "install", "--quiet", _CORE,
            "-r", str(TOP / "meta/ee-requirements.txt"))  # fmt: skip
        (VENV / ".installed").touch()
    return VENV


def install_the_collection() -> None:
    """Built from this checkout, installed from the tarball; community.crypto beside it."""
    bin_dir = _venv() / "bin"
    _sh(str(bin_dir / "ansible-galaxy"), "collection", "build", "--force",
        "--output-path", str(HOME), cwd=TOP)  # fmt: skip
    tarball = HOME / f"{GALAXY['namespace']}-{GALAXY['name']}-{GALAXY['version']}.tar.gz"
    import ansible  # the ansible package's copy of community.crypto (no Galaxy here)

    crypto = Path(ansible.__file__).parent.parent / "ansible_collections/community/crypto"
    into = ("-p", str(HOME / "collections"))
    _sh(str(bin_dir / "ansible-galaxy"), "collection", "install", "--offline", "--force", *into,
        str(tarball), str(crypto), cwd=HOME, env=_env())  # fmt: skip


def _env(mitogen: bool = False) -> dict[str, str]:
    """Only the operator's ansible.cfg: no ANSIBLE_* of molecule's or the Makefile's."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("ANSIBLE_")}
    env |= {"ANSIBLE_CONFIG": str(HOME / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    if mitogen:  # the tests' speed-up (docs/testing.md), this checkout's venv and shim
        env |= {
            "ANSIBLE_STRATEGY": "mitogen_linear",
            "ANSIBLE_STRATEGY_PLUGINS": str(TOP / "scripts/mitogen"),
            "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "0",  # the installed copies, none of its own
        }
    return env


def command(playbook: str, *args: str, mitogen: bool = False, tool: str = "ansible-playbook"):
    """The argv and environment of one run. Ansible's own strategy from the operator's
    virtualenv; with mitogen, this checkout's (same ansible-core) with Mitogen's."""
    bin_dir = Path(sys.executable).parent if mitogen else _venv() / "bin"
    argv = [str(bin_dir / tool), "-i", str(INVENTORY)]
    if tool == "ansible-playbook":
        argv.append(f"codegraph.ops.{playbook}")
    return [*argv, *args], _env(mitogen)


def run(playbook: str, *args: str, mitogen: bool = False, timeout: int = 1800):
    """Run a playbook of the installed collection; the API key must not be printed."""
    argv, env = command(playbook, *args, mitogen=mitogen)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                            cwd=HOME, check=False)  # fmt: skip
    assert api_key() not in result.stdout + result.stderr, f"{playbook} printed the API key"
    return result


def api_key() -> str:
    return (INVENTORY / ".secrets/api_key").read_text().strip()


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP of a run: host -> {ok, changed, unreachable, failed, ...}."""
    found = {}
    for name, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.M):
        found[name] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counts)}
    return found


def converge() -> None:
    """The first deploy of a new fleet: its CA and its stream made once."""
    install_the_collection()
    release = INVENTORY / "group_vars/all/release.yml"
    release.write_text(
        "# the release as the project publishes it (written by molecule/fleet/consumer.py)\n"
        + yaml.safe_dump(
            {"codegraph_release_url": f"{PUBLISHED}/codegraph-{{{{ codegraph_version }}}}.tar.gz"}
        )
    )
    started = time.monotonic()
    result = run("site", "-e", "fleet_ca_create=true", "-e", "codegraph_stream_create=true")
    log = HOME / "converge.log"
    log.write_text(result.stdout + result.stderr)
    print(f"codegraph.ops.site from the installed collection: {time.monotonic() - started:.0f} s,"
          f" its output in {log}")  # fmt: skip
    print(result.stdout[result.stdout.rfind("PLAY RECAP") :])
    if result.returncode != 0:
        lines = result.stdout.splitlines()
        failed = [line for line in lines if line.startswith(("fatal", "failed"))][:20]
        raise SystemExit("\n".join([*failed, result.stdout[-4000:], result.stderr[-2000:]]))


if __name__ == "__main__":
    {"prepare": prepare, "converge": converge}[sys.argv[1]]()
