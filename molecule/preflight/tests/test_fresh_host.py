"""This scenario's host, never converged (preflight left it as it was), in this order:

1. `site.yml --check --diff` from scratch, from a controller without a fleet CA, every
   role on this host (it is also made the monitoring host, the load balancer and a NATS
   server): it succeeds, says what it would do, prints no secret, and touches neither
   the host nor the controller;
2. examples/consumer, a playbook repository of a user's own, converges it: the
   collection built here and installed from its tarball into the example's own
   collections folder (with community.crypto, taken from the ansible package: there is
   no Galaxy here), nothing of this repository's roles, modules or ansible.cfg in sight.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import ansible
import pytest
import yaml
from cg_molecule import ANSIBLE_ENV, EPHEMERAL, INVENTORY, TOP

GALAXY = yaml.safe_load((TOP / "galaxy.yml").read_text())
TARBALL = f"{GALAXY['namespace']}-{GALAXY['name']}-{GALAXY['version']}.tar.gz"
HOST = "cg-preflight"


# what the monitoring, lb and nats roles install (the codegraph role's packages stay: the
# consumer example converges this host offline afterwards)
SERVICE_PACKAGES = [
    "prometheus",
    "prometheus-alertmanager",
    "prometheus-node-exporter",
    "haproxy",
    "nats-server",
]
# the host's files as preflight's converge.yml fingerprints them
STATE = (
    "find /opt /etc /usr/local/share/ca-certificates -xdev "
    "-printf '%p %m %u %g %s %T@\\n' 2>/dev/null | sort | sha256sum"
)


def test_check_mode_from_scratch_reports_and_touches_nothing(host, tmp_path):
    """The whole of site.yml: this host also in the monitoring and lb groups, and
    replicated (a NATS server of its own), so every role runs in check mode on it."""
    # A never-converged host has none of the services' packages (the image has them, for
    # the scenarios that converge offline): purge them, and give apt the controller's
    # package lists (the same Debian release) so the dry run can say what it would install.
    purged = host.run(f"apt-get purge -y -q {' '.join(SERVICE_PACKAGES)}")
    assert purged.rc == 0, purged.stderr
    subprocess.run(
        ["podman", "cp", "/var/lib/apt/lists/.", f"{HOST}:/var/lib/apt/lists/"], check=True
    )
    before = host.check_output(STATE)
    given = {
        name: secrets.token_urlsafe(32)
        for name in (
            "codegraph_api_key",
            "nats_app_password",
            "nats_admin_password",
            "nats_route_password",
            "monitoring_scrape_password",
        )
    }
    everything = {
        "all": {
            "children": {"monitoring": {"hosts": {HOST: {}}}, "lb": {"hosts": {HOST: {}}}},
            "vars": {
                **given,
                "codegraph_nats_password": given["nats_app_password"],
                "codegraph_nats_admin_password": given["nats_admin_password"],
                "codegraph_replication": "jetstream",
                "fleet_ca_create": True,
                "codegraph_tls_secrets_dir": f"{tmp_path}/tls",
                # an app host that is also the monitoring host: the service's metrics
                # take 9090 (preflight refuses Prometheus' default port there)
                "prometheus_port": 9091,
            },
        }
    }
    (tmp_path / "everything.yml").write_text(yaml.safe_dump(everything))
    result = _run(
        [
            *("ansible-playbook", str(TOP / "playbooks/site.yml"), "--check", "--diff"),
            *("-i", str(INVENTORY), "-i", str(tmp_path / "everything.yml")),
        ],
        env=ANSIBLE_ENV,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    recap = re.search(
        rf"{HOST}\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", result.stdout
    )
    assert recap and int(recap.group(1)) > 10, result.stdout[-3000:]
    for role in ("nats", "codegraph", "prometheus", "alertmanager", "grafana_provisioning", "lb"):
        assert re.search(rf"TASK \[{role} : ", result.stdout), f"{role} did not run"
    assert "Would create the fleet CA" in result.stdout
    for package in SERVICE_PACKAGES:  # what apt would install, as the dry run reports it
        assert re.search(rf"Install the missing packages \((.*, )?{package}(,|\))", result.stdout)
    printed = result.stdout + result.stderr
    for name, value in given.items():
        assert value not in printed, f"{name} printed"
    assert "PRIVATE KEY" not in printed
    assert host.check_output(STATE) == before
    assert not (tmp_path / "tls").exists()


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)


@pytest.fixture(scope="module")
def consumer(tmp_path_factory) -> tuple[Path, dict]:
    """The example copied out, the collection installed into it, pointed at this host."""
    work = tmp_path_factory.mktemp("consumer")
    repo = work / "consumer"
    shutil.copytree(TOP / "examples/consumer", repo)
    # only the example's ansible.cfg and its ./collections: no ANSIBLE_* of molecule's
    # (its roles path, library and config point into this repository)
    env = {name: value for name, value in os.environ.items() if not name.startswith("ANSIBLE_")}
    env |= {"ANSIBLE_CONFIG": str(repo / "ansible.cfg"), "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "0"}
    built = _run(["ansible-galaxy", "collection", "build", "--output-path", str(work)], cwd=TOP)
    assert built.returncode == 0, built.stdout + built.stderr
    crypto = Path(ansible.__file__).parent.parent / "ansible_collections/community/crypto"
    installed = _run(
        [
            *("ansible-galaxy", "collection", "install", "--no-deps", "-p", "collections"),
            *(str(work / TARBALL), str(crypto)),
        ],
        cwd=repo,
        env=env,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    shutil.copytree(TOP / "artifacts", repo / "releases")
    molecule_inventory = yaml.safe_load((EPHEMERAL / "inventory/ansible_inventory.yml").read_text())
    scenario = yaml.safe_load((TOP / "molecule/preflight/molecule.yml").read_text())
    reach = {
        "ansible_host": scenario["platforms"][0]["ip"],
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(EPHEMERAL / "ssh/id_ed25519"),
        "ansible_ssh_common_args": molecule_inventory["all"]["hosts"][HOST][
            "ansible_ssh_common_args"
        ],
    }
    inventory = {"all": {"children": {"codegraph": {"hosts": {HOST: reach}}}}}
    (repo / "inventory/hosts.yml").write_text(yaml.safe_dump(inventory))
    return repo, env


def test_the_example_converges_a_fresh_host_from_the_installed_collection(consumer, host):
    repo, env = consumer
    result = _run(["ansible-playbook", "site.yml"], cwd=repo, env=env)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert "codegraph.ops.codegraph" in result.stdout or "codegraph :" in result.stdout
    key = (repo / "inventory/.secrets/api_key").read_text().strip()
    assert key not in result.stdout + result.stderr
    health = host.run("curl -sf https://localhost:8080/health")
    assert health.rc == 0 and '"status":"healthy"' in health.stdout.replace(" ", ""), health
