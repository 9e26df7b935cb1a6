#!/usr/bin/env bash
# Build the release artifact on the controller: every wheel the service needs
# (an offline wheelhouse) in artifacts/codegraph-VERSION.tar.gz, plus its .sha256.
# Usage: scripts/build-release.sh [VERSION]   (default: the version in app/pyproject.toml)
# An existing artifact for VERSION is reused while app/ is unchanged (its sources'
# fingerprint is kept beside it in .source); a changed app/ is rebuilt.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$top/.venv/bin/python}
version=${1:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/app/pyproject.toml")}
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+([.+-][0-9A-Za-z.]+)?$ ]] || {
  echo "build-release: '$version' is not a version like 1.2.3" >&2
  exit 2
}
out=$top/artifacts
artifact=$out/codegraph-$version.tar.gz
# What the wheel is built from (tests, caches and build litter aside).
source_fingerprint=$(cd "$top/app" && find pyproject.toml src -type f \
  ! -path '*/__pycache__/*' ! -path '*.egg-info/*' -print0 \
  | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
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
echo "$version" >"$stage/VERSION"
mkdir -p "$out"
# Reproducible tarball: fixed order, owners and times.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work" -czf "$artifact.tmp" "codegraph-$version"
mv "$artifact.tmp" "$artifact"
(cd "$out" && sha256sum "$(basename "$artifact")" >"$(basename "$artifact").sha256")
echo "$source_fingerprint" >"$artifact.source"
echo "$artifact"
