"""The fleet CA's key kept encrypted with ansible-vault: the fleet_ca role signs with it
(decrypted in memory), never rewrites it, and without the vault password stops instead of
making a new CA. Runs the role's controller-side tasks (preflight, sign) on this machine,
into a temporary secrets folder; nothing is installed anywhere."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PLAY = """
- hosts: cg-test
  gather_facts: true
  tasks:
    - ansible.builtin.include_role:
        name: fleet_ca
        tasks_from: "{{ item }}"
      loop: [preflight, sign]
"""


def _run(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    (tmp / "hosts.yml").write_text(
        "all:\n  hosts:\n    cg-test:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {sys.executable}\n"
    )
    (tmp / "play.yml").write_text(PLAY)
    return subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            *("-i", str(tmp / "hosts.yml"), str(tmp / "play.yml")),
            *("-e", f"fleet_ca_secrets_dir={tmp / 'tls'}"),
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(TOP / "ansible.cfg"),
            "ANSIBLE_BECOME": "false",
            "ANSIBLE_GATHER_SUBSET": "!all,!min,network",
            "ANSIBLE_CACHE_PLUGIN": "memory",
        },
    )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def vaulted_ca(tmp_path) -> Path:
    """A fleet CA made by the role, its key then encrypted with ansible-vault."""
    created = _run(tmp_path, "-e", "fleet_ca_create=true")
    assert created.returncode == 0, created.stdout[-3000:]
    (tmp_path / "vault-pass").write_text("a vault password for the test\n")
    subprocess.run(
        [
            str(BIN / "ansible-vault"),
            *("encrypt", "--vault-password-file", str(tmp_path / "vault-pass")),
            str(tmp_path / "tls/ca.key"),
        ],
        check=True,
        capture_output=True,
    )
    (tmp_path / "tls/cg-test.crt").unlink()  # the host needs a new certificate
    return tmp_path


def test_the_role_signs_with_a_vault_encrypted_ca_key_and_leaves_it_encrypted(vaulted_ca):
    key = vaulted_ca / "tls/ca.key"
    before = _digest(key)
    result = _run(vaulted_ca, "--vault-password-file", str(vaulted_ca / "vault-pass"))
    assert result.returncode == 0, result.stdout[-3000:]
    tls = vaulted_ca / "tls"
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tls / "ca.crt"), str(tls / "cg-test.crt")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert key.read_text().startswith("$ANSIBLE_VAULT;")
    assert _digest(key) == before
    assert "BEGIN" not in result.stdout  # no key material printed


def test_without_the_vault_password_it_stops_and_keeps_the_ca(vaulted_ca):
    key, cert = vaulted_ca / "tls/ca.key", vaulted_ca / "tls/ca.crt"
    before = (_digest(key), _digest(cert))
    result = _run(vaulted_ca)
    assert result.returncode != 0
    assert "no vault secrets found" in result.stdout, result.stdout[-3000:]
    assert (_digest(key), _digest(cert)) == before
    assert not (vaulted_ca / "tls/cg-test.crt").exists()
