"""The repository is an Ansible collection (galaxy.yml): what `ansible-galaxy collection
build` packs, and that its playbooks run by their full names once it is installed."""

from __future__ import annotations

import os
import re
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
    wanted = {"meta/runtime.yml", "LICENSE", "CHANGELOG.md", "plugins/modules/haproxy_server.py"}
    wanted |= {f"playbooks/{name}" for name in PLAYBOOKS}
    for role in (TOP / "roles").iterdir():
        wanted |= {
            f"roles/{role.name}/tasks/main.yml",
            f"roles/{role.name}/meta/argument_specs.yml",
        }
    for folder in ("files/alerts", "files/dashboards"):
        wanted |= {str(path.relative_to(TOP)) for path in (TOP / folder).iterdir()}
    assert not wanted - names, sorted(wanted - names)
    kept_out = {"app", "molecule", "inventories", "bench", "scripts", "artifacts"}
    assert not [name for name in names if name.split("/")[0] in kept_out]
    # of tests/, only what ansible-test runs: the modules' unit tests and sanity ignores
    shipped_tests = {name.split("/")[1] for name in names if name.startswith("tests/")}
    assert shipped_tests == {"unit", "sanity"}, shipped_tests
    assert "playbooks/lab.yml" not in names and not [n for n in names if ".secrets" in n]


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory) -> tuple[Path, dict]:
    """The artifact installed into a folder of its own; the environment that sees it."""
    tmp_path = tmp_path_factory.mktemp("installed")
    collections = tmp_path / "collections"
    # away from this repository's ansible.cfg and roles, and from any copy of the
    # collection elsewhere (ansible-lint installs one into ~/.ansible): only the one
    # installed here, and the ansible package's own collections (community.crypto)
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": f"{collections}:{Path(ansible.__file__).parent.parent}",
        "ANSIBLE_ROLES_PATH": str(tmp_path / "no-roles"),
        "ANSIBLE_CONFIG": str(tmp_path / "none.cfg"),
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    _run(
        str(BIN / "ansible-galaxy"),
        *("collection", "install", "--force", "--no-deps", "-p", str(collections), str(built)),
        cwd=tmp_path,
        env=env,
    )
    root = collections / "ansible_collections" / FQCN.replace(".", "/")
    assert (root / "MANIFEST.json").is_file()
    return root, env


def test_installed_its_playbooks_run_by_their_full_names(installed, tmp_path):
    _, env = installed
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


def test_ansible_test_sanity_and_units_pass_for_the_modules(installed):
    """ansible-test on the installed collection: its sanity tests for the modules, and
    the modules' unit tests (tests/unit: against a real HAProxy)."""
    root, env = installed
    _ansible_test_can_make_its_venvs()
    modules = [str(path.relative_to(root)) for path in (root / "plugins/modules").glob("*.py")]
    assert modules
    _run(
        str(BIN / "ansible-test"),
        *("sanity", "--venv", "--python", PYTHON, *SANITY_TESTS, *modules),
        cwd=root,
        env=env,
    )
    _run(str(BIN / "ansible-test"), "units", "--venv", "--python", PYTHON, cwd=root, env=env)


PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
SANITY_TESTS = [
    f"--test={name}"
    for name in ("validate-modules", "compile", "import", "pep8", "pylint", "shebang", "yamllint")
]


def _ansible_test_can_make_its_venvs() -> None:
    """ansible-test bootstraps pip in each venv it makes with a script it downloads from
    ci-files.testing.ansible.com, which this network does not reach; in its cache goes a
    stand-in that installs the same pip from PyPI with this virtualenv's pip."""
    source = (BIN.parent / "lib").glob(
        "python3*/site-packages/ansible_test/_internal/python_requirements.py"
    )
    pip = re.search(r"pip='([0-9.]+)'", next(source).read_text()).group(1)
    cache = Path.home() / f".ansible/test/cache/get_pip_{pip.replace('.', '_')}.py"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(
        "# written by codegraph-ops' tests/test_collection.py (see there)\n"
        "import subprocess, sys\n"
        "args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]\n"
        f"subprocess.check_call([{sys.executable!r}, '-m', 'pip', '--python', sys.executable,"
        " 'install', *args])\n"
    )


def test_the_module_documentation_renders():
    shown = _run(str(BIN / "ansible-doc"), "-M", str(TOP / "plugins/modules"), "haproxy_server")
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
