"""Several roles include fleet_ca on one host (the service, NATS, the metrics endpoint,
the load balancer), some with extra names: each set of names gets a certificate of its
own, signed once per run, and a second run changes nothing. Runs the role's
controller-side tasks (preflight, sign) on this machine, into a temporary secrets
folder; nothing is installed anywhere."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from playbook import LOCAL, run_play

NAME = "codegraph.example.com"
# the order of site.yml on an app host that also names itself NAME: the metrics
# endpoint and NATS (no extra names), then the service (NAME)
PLAY = f"""
- hosts: cg-test
  gather_facts: true
  tasks:
    - ansible.builtin.include_role:
        name: fleet_ca
        tasks_from: "{{{{ step.tasks }}}}"
      vars:
        fleet_ca_extra_sans: "{{{{ step.sans }}}}"
      loop:
        - {{tasks: preflight, sans: []}}
        - {{tasks: sign, sans: []}}
        - {{tasks: sign, sans: []}}
        - {{tasks: preflight, sans: ["{NAME}"]}}
        - {{tasks: sign, sans: ["{NAME}"]}}
      loop_control:
        loop_var: step
"""


def _run(tmp: Path) -> list[dict]:
    """The results of the signing task, one per include that ran it (JSON callback)."""
    result = run_play(
        tmp,
        {"all": {"hosts": {"cg-test": LOCAL}}},
        PLAY,
        *("-e", f"fleet_ca_secrets_dir={tmp / 'tls'}", "-e", "fleet_ca_create=true"),
        env={
            "ANSIBLE_GATHER_SUBSET": "!all,!min,network",
            "ANSIBLE_CACHE_PLUGIN": "memory",
            "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        },
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    tasks = json.loads(result.stdout)["plays"][0]["tasks"]
    return [
        task["hosts"]["cg-test"]
        for task in tasks
        if "Sign this host's certificate" in task["task"]["name"]
        and not task["hosts"]["cg-test"].get("skipped")
    ]


def _openssl(*args: str) -> str:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True).stdout


def test_each_set_of_names_has_its_certificate_signed_once_per_run(tmp_path):
    signed = _run(tmp_path)
    tls = tmp_path / "tls"
    plain = tls / "cg-test.crt"
    named = list(tls.glob("cg-test-*.crt"))
    assert len(signed) == 2  # one per set of names, not one per include
    assert all(result["changed"] for result in signed)
    assert len(named) == 1, sorted(p.name for p in tls.iterdir())
    names = ("x509", "-noout", "-ext", "subjectAltName", "-in")
    assert f"DNS:{NAME}" in _openssl(*names, str(named[0]))
    assert NAME not in _openssl(*names, str(plain))
    for certificate in (plain, named[0]):
        _openssl("verify", "-CAfile", str(tls / "ca.crt"), str(certificate))
        # both are the host's one key
        assert _openssl("x509", "-noout", "-pubkey", "-in", str(certificate)) == _openssl(
            "pkey", "-pubout", "-in", str(tls / "cg-test.key")
        )
    before = {path.name: path.read_bytes() for path in tls.iterdir()}

    again = _run(tmp_path)
    assert len(again) == 2
    assert not any(result["changed"] for result in again)  # neither re-signed by the other
    assert {path.name: path.read_bytes() for path in tls.iterdir()} == before
