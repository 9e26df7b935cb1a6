"""The repository is an Ansible collection (galaxy.yml): what `ansible-galaxy collection
build` packs, and that its playbooks run by their full names once it is installed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

import ansible
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

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


def test_installed_from_a_git_checkout_it_is_the_built_collection(built, tmp_path):
    """`ansible-galaxy collection install git+file://...` (this checkout's HEAD) installs
    the same files as the tarball: what galaxy.yml's build_ignore keeps out stays out."""
    _run(
        str(BIN / "ansible-galaxy"),
        *("collection", "install", "--offline", "--no-deps", "-p", str(tmp_path)),
        f"git+file://{TOP}",
        cwd=tmp_path,
    )
    root = tmp_path / "ansible_collections" / FQCN.replace(".", "/")
    installed = {entry["name"] for entry in _files(root / "FILES.json")}
    with tarfile.open(built) as tar:
        packed = {entry["name"] for entry in json.load(tar.extractfile("FILES.json"))["files"]}
    assert installed == packed, sorted(installed ^ packed)[:20]


def _files(path: Path) -> list[dict]:
    return json.loads(path.read_text())["files"]


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


def test_ansible_test_sanity_and_units_pass_for_the_whole_collection(installed):
    """ansible-test on the installed collection: every sanity test over every file, with
    the ignore file of this ansible-core version; and the unit tests (tests/unit: the
    module against a real HAProxy, the filters)."""
    root, env = installed
    _ansible_test_can_make_its_venvs()
    _run(str(BIN / "ansible-test"), "sanity", "--venv", "--python", PYTHON, cwd=root, env=env)
    _run(str(BIN / "ansible-test"), "units", "--venv", "--python", PYTHON, cwd=root, env=env)


PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def test_every_supported_ansible_core_has_an_ignore_file_whose_entries_say_why():
    """From meta/runtime.yml's lowest ansible-core to the one pinned here; an entry without
    its reason is refused (ansible-test takes what follows '#' as a comment)."""
    lowest = yaml.safe_load((TOP / "meta/runtime.yml").read_text())["requires_ansible"]
    low = tuple(int(n) for n in re.search(r">=\s*(\d+)\.(\d+)", lowest).groups())
    pinned = re.search(r"^ansible-core==(\d+)\.(\d+)", REQUIREMENTS, re.M).groups()
    high = tuple(int(n) for n in pinned)
    assert low <= high, (lowest, pinned)
    for minor in range(low[1], high[1] + 1):
        ignore = TOP / f"tests/sanity/ignore-{low[0]}.{minor}.txt"
        assert ignore.is_file(), f"{ignore.name} is missing"
        for line in ignore.read_text().splitlines():
            if line.strip():
                assert re.match(r"^\S+ \S+ # \S", line), f"{ignore.name}: no reason: {line}"


REQUIREMENTS = (TOP / "requirements.txt").read_text()


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


def test_the_plugin_documentation_renders(installed):
    _, env = installed
    module = _run(str(BIN / "ansible-doc"), f"{FQCN}.haproxy_server", env=env)
    assert "OPTIONS" in module.stdout and "drained" in module.stdout
    fleet = _run(str(BIN / "ansible-doc"), "-t", "filter", f"{FQCN}.fleet_address", env=env)
    assert "codegraph_fleet_address" in fleet.stdout


def test_antsibull_docs_lints_every_role_entry_point_and_plugin(installed):
    root, env = installed
    lint = ("lint-collection-docs", "--plugin-docs", ".")
    _run(str(BIN / "antsibull-docs"), *lint, cwd=root, env=env)


def test_the_controller_requirements_are_declared_for_execution_environments():
    ee = yaml.safe_load((TOP / "meta/execution-environment.yml").read_text())
    shipped = (TOP / ee["dependencies"]["python"]).read_text()
    declared = {
        Requirement(line).name: Requirement(line).specifier
        for line in shipped.splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"passlib", "bcrypt", "cryptography"} <= set(declared)  # password_hash, crypto
    for name, wanted in declared.items():  # what this repository runs with satisfies them
        assert wanted.contains(version(name)), f"{name} {version(name)} is not {wanted}"
    for dependency, bound in GALAXY["dependencies"].items():
        assert "<" in bound, f"{dependency}: no upper bound ({bound})"


def test_the_changelog_is_consistent_and_at_the_collection_version():
    _run(
        str(BIN / "antsibull-changelog"),
        "lint",
        cwd=TOP,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
    )
    releases = yaml.safe_load((TOP / "changelogs/changelog.yaml").read_text())["releases"]
    if "-" not in GALAXY["version"]:
        assert GALAXY["version"] in releases, "galaxy.yml's version has no changelog entry"
        return
    # between releases main says so: a prerelease of the next version, above every release,
    # major when a fragment breaks something, with its changes waiting as fragments
    upcoming = Version(GALAXY["version"])
    assert upcoming.is_prerelease and upcoming > max(Version(v) for v in releases), upcoming
    fragments = [
        yaml.safe_load(f.read_text()) for f in (TOP / "changelogs/fragments").glob("*.yml")
    ]
    assert fragments, f"{upcoming} is a prerelease with no change waiting in changelogs/fragments"
    newest = max(Version(v) for v in releases)
    if any("breaking_changes" in fragment for fragment in fragments):
        assert upcoming.major > newest.major, (
            f"a breaking change needs a major version, not {upcoming}"
        )


def test_every_plugin_says_when_it_was_added_and_the_versions_agree():
    """version_added of a module is the release whose changelog lists it, or the upcoming
    version (galaxy.yml's, a prerelease) when no release does yet."""
    releases = yaml.safe_load((TOP / "changelogs/changelog.yaml").read_text())["releases"]
    listed = {
        plugin["name"]: release
        for release, entry in releases.items()
        for kind in ("modules",)
        for plugin in entry.get(kind, [])
    }
    upcoming = Version(GALAXY["version"]).base_version
    for module in sorted((TOP / "plugins/modules").glob("*.py")):
        documentation = re.search(r'DOCUMENTATION = r"""(.*?)"""', module.read_text(), re.S)
        added = str(yaml.safe_load(documentation.group(1))["version_added"])
        if module.stem in listed:
            assert added == listed[module.stem], (module.stem, added, listed[module.stem])
        elif added in releases:  # moved into the collection then: its changelog says so
            assert module.stem in str(releases[added]), (module.stem, added)
        else:
            assert added == upcoming, f"{module.stem}: version_added {added}, not {upcoming}"
