#!/usr/bin/python
# Copyright: CodeGraph Ops
# Apache License 2.0 (see LICENSE)
"""Drain a server of an HAProxy backend, or put it back, through the runtime API."""

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_server
short_description: Drain an HAProxy server or put it back, polling every 0.1 s
version_added: 2.0.0
description:
  - C(state=drained) sets the server to DRAIN (no new requests) and waits until it has
    no request in flight. Health checks keep running (MAINT would stop them), so HAProxy
    always knows whether the host is up and putting it back needs no new checks.
  - C(state=ready) takes the server out of DRAIN or MAINT and waits until HAProxy's
    own health check sees it UP (at once if its checks never failed, else once they
    pass C(rise) times). Nothing is done if it is UP already.
  - Written for rolling restarts, where every second spent waiting is a second of
    downtime budget; community.general.haproxy polls at whole seconds only.
  - Supports check mode (reports what would change and touches nothing).
author: CodeGraph Ops (@codegraph-ops)
attributes:
  check_mode:
    support: full
    description: Reports what would change and touches nothing.
  diff_mode:
    support: none
    description: There is no file to show a difference of.
options:
  socket:
    description: Path of HAProxy's admin-level stats socket.
    type: path
    required: true
  backend:
    description: Backend (proxy) name.
    type: str
    required: true
  server:
    description: Server name inside the backend.
    type: str
    required: true
  state:
    description: What the server should be.
    type: str
    choices: [drained, ready]
    required: true
  timeout:
    description: Seconds to wait for the requests in flight (drained) or for UP (ready).
    type: float
    default: 120
"""

EXAMPLES = r"""
- name: Drain app1
  haproxy_server:
    socket: /run/haproxy/admin.sock
    backend: codegraph
    server: app1
    state: drained
"""

RETURN = r"""
status:
  description: The server's status in HAProxy at the end (UP, MAINT, ...).
  type: str
  returned: always
waited:
  description: Seconds spent waiting for the server to get there.
  type: float
  returned: always
"""

import csv
import socket
import time

from ansible.module_utils.basic import AnsibleModule

POLL_SECONDS = 0.1


class RuntimeApi:
    def __init__(self, path: str) -> None:
        self.path = path

    def call(self, command: str) -> str:
        """One command; HAProxy answers and closes the connection."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(10)
            connection.connect(self.path)
            connection.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def server(self, backend: str, server: str) -> dict[str, str]:
        """The server's row of `show stat` (status, scur: requests in flight, ...)."""
        lines = self.call("show stat").splitlines()
        if not lines or not lines[0].startswith("# "):
            raise LookupError(f"unexpected answer to 'show stat': {lines[:1]}")
        rows = csv.DictReader([lines[0][2:], *lines[1:]])
        for row in rows:
            if row["pxname"] == backend and row["svname"] == server:
                return row
        raise LookupError(f"HAProxy has no server {backend}/{server}")

    def admin_state(self, backend: str, server: str) -> int:
        """Its srv_admin_state bits (maintenance, drain: set by hand or inherited); 0
        when it takes new requests as far as the operator is concerned."""
        lines = self.call(f"show servers state {backend}").splitlines()
        header = next((line[2:].split() for line in lines if line.startswith("# ")), None)
        if header is None:
            raise LookupError(f"HAProxy has no backend {backend}: {lines[:1]}")
        for line in lines:
            row = dict(zip(header, line.split(), strict=False))
            if row.get("be_name") == backend and row.get("srv_name") == server:
                return int(row["srv_admin_state"])
        raise LookupError(f"HAProxy has no server {backend}/{server}")

    def set_state(self, backend: str, server: str, state: str) -> None:
        answer = self.call(f"set server {backend}/{server} state {state}").strip()
        if answer:
            raise RuntimeError(f"set server {backend}/{server} state {state}: {answer}")


def wait_for(api: RuntimeApi, module: AnsibleModule, done, what: str) -> tuple[dict, float]:
    params = module.params
    started = time.monotonic()
    while True:
        row = api.server(params["backend"], params["server"])
        waited = time.monotonic() - started
        if done(row):
            return row, waited
        if waited >= params["timeout"]:
            module.fail_json(
                msg=f"{params['backend']}/{params['server']}: {what} after "
                f"{params['timeout']:g} s (status {row['status']}, "
                f"{row['scur']} requests in flight)",
                status=row["status"],
                waited=round(waited, 2),
            )
        time.sleep(POLL_SECONDS)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "socket": {"type": "path", "required": True},
            "backend": {"type": "str", "required": True},
            "server": {"type": "str", "required": True},
            "state": {"type": "str", "required": True, "choices": ["drained", "ready"]},
            "timeout": {"type": "float", "default": 120},
        },
        supports_check_mode=True,
    )
    backend, server = module.params["backend"], module.params["server"]
    api = RuntimeApi(module.params["socket"])
    waited = 0.0
    try:
        row = api.server(backend, server)
        if module.params["state"] == "drained":
            changed = api.admin_state(backend, server) == 0
            if changed and not module.check_mode:
                api.set_state(backend, server, "drain")
            if not module.check_mode:
                row, waited = wait_for(
                    api, module, lambda r: r["scur"] == "0", "requests still in flight"
                )
        else:
            changed = row["status"] != "UP"
            if changed and not module.check_mode:
                api.set_state(backend, server, "ready")
                row, waited = wait_for(api, module, lambda r: r["status"] == "UP", "not UP")
    except (OSError, LookupError, RuntimeError) as error:
        module.fail_json(msg=f"HAProxy runtime API at {module.params['socket']}: {error}")
    module.exit_json(changed=changed, status=row["status"], waited=round(waited, 2))


if __name__ == "__main__":
    main()
