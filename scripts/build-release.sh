#!/usr/bin/env bash
# Build the release artifact on the controller: every wheel the service needs
# (an offline wheelhouse) in artifacts/codegraph-VERSION.tar.gz, plus its .sha256.
# The wheelhouse serves the Python of each supported Debian release (12: 3.11, 13:
# 3.13, on x86_64): pip on the host picks the wheels that fit it.
# Usage: scripts/build-release.sh [VERSION]   (default: the version in app/pyproject.toml)
# An existing artifact for VERSION is reused while app/ and this script are unchanged
# (their fingerprint is kept beside it in .source); otherwise it is rebuilt.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$top/.venv/bin/python}
version=${1:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/app/pyproject.toml")}
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+([.+-][0-9A-Za-z.]+)?$ ]] || {
  echo "build-release: '$version' is not a version like 1.2.3" >&2
  exit 2
}
# The hosts' Pythons (Debian 12's 3.11, Debian 13's 3.13) other than the controller's own,
# whose wheels pip builds or takes first: binary wheels only, downloaded for them.
controller_python=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
other_pythons=()
for host_python in 3.11 3.13; do
  [[ $host_python == "$controller_python" ]] || other_pythons+=("$host_python")
done
out=$top/artifacts
artifact=$out/codegraph-$version.tar.gz
# What the wheel is built from (tests, caches and build litter aside).
source_fingerprint=$(cd "$top/app" && find pyproject.toml src -type f \
  ! -path '*/__pycache__/*' ! -path '*.egg-info/*' -print0 \
  | LC_ALL=C sort -z | xargs -0 sha256sum | { cat; sha256sum <"$top/scripts/build-release.sh"; } | sha256sum | cut -d' ' -f1)
if [[ -s $artifact && -s $artifact.sha256 && $(cat "$artifact.source" 2>/dev/null) == "$source_fingerprint" ]] \
  && (cd "$out" && sha256sum --quiet -c "$(basename "$artifact").sha256"); then
  echo "$artifact"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Build from a copy so another version number never touches the source tree.
cp -r "$top/app" "$work/src"
rm -rf "$work/src/tests" "$work/src/src/"*.egg-info
sed -i "s/^version = \".*\"/version = \"$version\"/" "$work/src/pyproject.toml"
stage=$work/codegraph-$version
mkdir -p "$stage/wheelhouse"
echo "build-release: building the wheelhouse for codegraph $version..." >&2
"$python" -m pip wheel --quiet --wheel-dir "$stage/wheelhouse" "$work/src" 2>&1 \
  | grep -v "^WARNING: Location" >&2 || true
compgen -G "$stage/wheelhouse/codegraph-$version-*.whl" >/dev/null  # the build really happened
# The other Pythons get the same versions of the service's dependencies (constraints
# from the wheels above), as binary wheels from PyPI. Only the dependencies are asked
# for: PyPI's own "codegraph" is another project, and must never replace ours.
"$python" - "$stage/wheelhouse/codegraph-$version-"*.whl >"$work/requirements.txt" <<'PY'
import sys, zipfile
from email.parser import Parser
with zipfile.ZipFile(sys.argv[1]) as wheel:
    meta = next(name for name in wheel.namelist() if name.endswith(".dist-info/METADATA"))
    for requirement in Parser().parsestr(wheel.read(meta).decode()).get_all("Requires-Dist") or []:
        if "extra ==" not in requirement:
            print(requirement)
PY
for wheel in "$stage"/wheelhouse/*.whl; do
  name=$(basename "$wheel" | cut -d- -f1)
  [[ $name == codegraph ]] || basename "$wheel" | awk -F- '{print $1 "==" $2}'
done >"$work/constraints.txt"
for other in "${other_pythons[@]}"; do
  echo "build-release: adding the wheels for Python $other..." >&2
  "$python" -m pip download --quiet --only-binary=:all: --python-version "$other" \
    --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_28_x86_64 --platform linux_x86_64 \
    -c "$work/constraints.txt" -r "$work/requirements.txt" --dest "$stage/wheelhouse" \
    >"$work/download.log" 2>&1 || {
    grep -v "^WARNING: Location" "$work/download.log" >&2
    echo "build-release: no complete set of binary wheels for Python $other" >&2
    exit 1
  }
done
echo "$version" >"$stage/VERSION"
mkdir -p "$out"
# Reproducible tarball: fixed order, owners and times.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work" -czf "$artifact.tmp" "codegraph-$version"
mv "$artifact.tmp" "$artifact"
(cd "$out" && sha256sum "$(basename "$artifact")" >"$(basename "$artifact").sha256")
echo "$source_fingerprint" >"$artifact.source"
echo "$artifact"
