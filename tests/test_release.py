"""The release artifact (scripts/build-release.sh): our own wheel, and every compiled
dependency for the Python of each supported Debian release, at one version."""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parent.parent
# Debian 12's Python, Debian 13's
PYTHONS = {"cp311", "cp313"}


@pytest.fixture(scope="module")
def wheels() -> dict[str, bytes]:
    built = subprocess.run(
        [str(TOP / "scripts/build-release.sh")], capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, built.stderr[-3000:]
    with tarfile.open(built.stdout.strip()) as tar:
        return {
            Path(member.name).name: tar.extractfile(member).read()
            for member in tar.getmembers()
            if member.name.endswith(".whl")
        }


def test_the_service_wheel_is_ours_not_a_namesake_from_pypi(wheels):
    """PyPI has another project called codegraph: the wheel must be the one built here."""
    (name,) = [wheel for wheel in wheels if wheel.startswith("codegraph-")]
    with zipfile.ZipFile(io.BytesIO(wheels[name])) as wheel:
        meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        requires = Parser().parsestr(wheel.read(meta).decode()).get_all("Requires-Dist")
        assert "codegraph/store/graph.py" in wheel.namelist()
    assert any(r.startswith("rocksdict") for r in requires), requires


def test_every_compiled_dependency_is_there_for_each_debian_python_at_one_version(wheels):
    compiled: dict[str, dict[str, str]] = {}
    for name in wheels:
        match = re.match(r"([^-]+)-([^-]+)-(cp3\d+)-(cp3\d+)-", name)
        if match:  # abi3 and pure-Python wheels serve every Python
            package, version, python, _ = match.groups()
            compiled.setdefault(package, {})[python] = version
    assert compiled, "no compiled wheel at all"
    for package, by_python in compiled.items():
        assert set(by_python) == PYTHONS, (package, by_python)
        assert len(set(by_python.values())) == 1, (package, by_python)
