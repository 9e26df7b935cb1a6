#!/usr/bin/env bash
# Install what the controller needs from Debian (idempotent: only what is missing),
# and configure podman as this kind of machine requires (see docs/testing.md).
set -euo pipefail

packages=(
  podman runc debootstrap uidmap slirp4netns  # test hosts: systemd in podman
  prometheus                                  # promtool, for the alert rules
  curl jq openssl shellcheck                  # the runbook's tools, scripts linted
  wrk                                         # load generation in benchmarks
  nats-server faketime                        # a real JetStream cluster for the app's tests; a host's clock set ahead
  haproxy                                     # a real HAProxy for the haproxy_server module's tests
  sudo                                        # become on localhost: Mitogen runs sudo even as root
  g++ python3-dev                             # hnswlib (the tests' reference index) builds from source
)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian's prometheus package would start a server on 9090; nothing is started here.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# crun fails on this machine's cgroup v1 hybrid setup: use runc.
conf=/etc/containers/containers.conf
if ! grep -qs '^runtime = "runc"' "$conf"; then
  mkdir -p /etc/containers
  printf '[engine]\nruntime = "runc"\n' >>"$conf"
  echo "bootstrap: podman set to use runc ($conf)"
fi
