"""The fleet CA's key kept encrypted with ansible-vault: the fleet_ca role signs with it
(decrypted in memory), never rewrites it, and without the vault password stops instead of
making a new CA. Runs the role's controller-side tasks (preflight, sign) on this machine,
into a temporary secrets folder; nothing is installed anywhere."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from playbook import BIN, LOCAL, run_play

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
    return run_play(
        tmp,
        {"all": {"hosts": {"cg-test": LOCAL}}},
        PLAY,
        *("-e", f"fleet_ca_secrets_dir={tmp / 'tls'}"),
        *args,
        env={"ANSIBLE_GATHER_SUBSET": "!all,!min,network", "ANSIBLE_CACHE_PLUGIN": "memory"},
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
