#!/usr/bin/env bash
# Build the Debian systemd image the test hosts run, once: it is tagged with a hash
# of this recipe and rebuilt only when the recipe changes.
#   molecule/image/build.sh [12|13]   (default 12: bookworm; 13: trixie)
# There are no registry images here, hence debootstrap + `podman import`.
set -euo pipefail

release=${1:-12}
case $release in
  12) suite=bookworm ;;
  13) suite=trixie ;;
  *) echo "build.sh: Debian $release is not supported (12 or 13)" >&2; exit 2 ;;
esac
name=localhost/codegraph-debian$release-systemd
mirror=http://deb.debian.org/debian
# What a fresh Debian server of the fleet has, plus the packages the roles
# install (so a test run does not depend on the mirror; the roles still declare them).
include=(
  systemd systemd-sysv dbus sudo python3 python3-apt python3-venv iproute2 procps
  ca-certificates curl jq openssl cron logrotate gzip tar less openssh-server sysstat
  prometheus prometheus-alertmanager prometheus-node-exporter haproxy socat nats-server chrony
)
recipe_hash=$( (cat "$0"; echo "$suite"; printf '%s\n' "${include[@]}") | sha256sum | cut -c1-12)
image="$name:$recipe_hash"

if podman image exists "$image"; then
  echo "$image"
  exit 0
fi
echo "building $image with debootstrap (about a minute)..." >&2
root=$(mktemp -d /var/tmp/codegraph-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include="$(IFS=,; echo "${include[*]}")" "$suite" "$root" "$mirror" >&2
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
SOURCES
# Services a container should not run on its own; the roles enable what they need.
for unit in prometheus prometheus-alertmanager prometheus-node-exporter haproxy nats-server \
  chrony systemd-timesyncd getty@tty1 apt-daily.timer apt-daily-upgrade.timer; do
  rm -f "$root"/etc/systemd/system/*.wants/"$unit"*
done
ln -sf /dev/null "$root/etc/systemd/system/systemd-resolved.service"
# Each container gets its own SSH host keys at first boot (the lab reaches hosts over SSH).
rm -f "$root"/etc/ssh/ssh_host_*
mkdir -p "$root/etc/systemd/system/ssh.service.d"
printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' \
  >"$root/etc/systemd/system/ssh.service.d/host-keys.conf"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | podman import --change 'CMD ["/lib/systemd/systemd"]' \
  --change 'ENV container=podman' - "$image" >&2
podman tag "$image" "$name:latest"
# Drop images of older recipes (kept if a container still uses one).
podman images --format '{{.Repository}}:{{.Tag}}' "$name" | grep -vxF -e "$image" -e "$name:latest" \
  | xargs -r podman rmi >/dev/null 2>&1 || true
echo "$image"
