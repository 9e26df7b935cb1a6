"""The repository is an Ansible collection (galaxy.yml): what `ansible-galaxy collection
build` packs, and that its playbooks run by their full names once it is installed."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import ansible
import pytest
import yaml

TOP = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
GALAXY = yaml.safe_load((TOP / "galaxy.yml").read_text())
FQCN = f"{GALAXY['namespace']}.{GALAXY['name']}"
# playbooks of this repository only: the lab drives podman on the controller
REPO_ONLY = {"lab.yml"}
PLAYBOOKS = sorted(p.name for p in (TOP / "playbooks").glob("*.yml") if p.name not in REPO_ONLY)


def _run(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("built")
    _run(str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out), cwd=TOP)
    return out / f"{GALAXY['namespace']}-{GALAXY['name']}-{GALAXY['version']}.tar.gz"


def test_the_artifact_holds_the_roles_playbooks_module_rules_and_dashboards(built):
    with tarfile.open(built) as tar:
        names = set(tar.getnames())
    wanted = {"meta/runtime.yml", "LICENSE", "CHANGELOG.md", "roles/lb/library/haproxy_server.py"}
    wanted |= {f"playbooks/{name}" for name in PLAYBOOKS}
    for role in (TOP / "roles").iterdir():
        wanted |= {
            f"roles/{role.name}/tasks/main.yml",
            f"roles/{role.name}/meta/argument_specs.yml",
        }
    for folder in ("files/alerts", "files/dashboards"):
        wanted |= {str(path.relative_to(TOP)) for path in (TOP / folder).iterdir()}
    assert not wanted - names, sorted(wanted - names)
    kept_out = {"app", "molecule", "tests", "inventories", "bench", "scripts", "artifacts"}
    assert not [name for name in names if name.split("/")[0] in kept_out]
    assert "playbooks/lab.yml" not in names and not [n for n in names if ".secrets" in n]


def test_installed_its_playbooks_run_by_their_full_names(built, tmp_path):
    collections = tmp_path / "collections"
    # away from this repository's ansible.cfg and roles, and from any copy of the
    # collection elsewhere (ansible-lint installs one into ~/.ansible): only the one
    # installed here, and the ansible package's own collections (community.crypto)
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": f"{collections}:{Path(ansible.__file__).parent.parent}",
        "ANSIBLE_ROLES_PATH": str(tmp_path / "no-roles"),
        "ANSIBLE_CONFIG": str(tmp_path / "none.cfg"),
    }
    galaxy = str(BIN / "ansible-galaxy")
    _run(
        galaxy,
        "collection",
        "install",
        "--force",
        "--no-deps",
        "-p",
        str(collections),
        str(built),
        cwd=tmp_path,
        env=env,
    )
    assert (collections / f"ansible_collections/{FQCN.replace('.', '/')}/MANIFEST.json").is_file()
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[codegraph]\napp1\n[monitoring]\nops1\n[lb]\nops1\n")
    for name in PLAYBOOKS:
        playbook = f"{FQCN}.{name.removesuffix('.yml')}"
        _run(
            str(BIN / "ansible-playbook"),
            "-i",
            str(inventory),
            "--syntax-check",
            playbook,
            cwd=tmp_path,
            env=env,
        )


def test_the_module_documentation_renders():
    shown = _run(str(BIN / "ansible-doc"), "-M", str(TOP / "roles/lb/library"), "haproxy_server")
    assert "OPTIONS" in shown.stdout and "drained" in shown.stdout


def test_the_changelog_is_consistent_and_at_the_collection_version():
    _run(
        str(BIN / "antsibull-changelog"),
        "lint",
        cwd=TOP,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
    )
    releases = yaml.safe_load((TOP / "changelogs/changelog.yaml").read_text())["releases"]
    assert GALAXY["version"] in releases, "galaxy.yml's version has no changelog entry"
