"""A replicated fleet on loopback for the tests: a real NATS JetStream cluster (Debian's
nats-server, TLS and passwords as the role sets them up) and codegraph-api processes
that write through it."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jinja2
import orjson
import trustme
import yaml

from codegraph.replication.entries import FORMAT
from codegraph.replication.stream import StreamSpec, connection_options, ensure_stream
from codegraph.settings import Settings, parse_settings
from conftest import API_KEY, Served, config_for, free_port, start_server

NATS_PASSWORD = "nats-" + "p" * 28
ADMIN_PASSWORD = "admin-" + "a" * 27
ROUTE_PASSWORD = "route-" + "r" * 27
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
NATS_ROLE_VARS = Path(__file__).resolve().parents[2] / "roles/nats/vars/main.yml"


def permissions(user: str) -> str:
    """The permissions the nats role gives a user (app or admin), as nats-server reads them."""
    role_vars = yaml.safe_load(NATS_ROLE_VARS.read_text())
    text = orjson.dumps(role_vars[f"_nats_{user}_permissions"]).decode()
    return jinja2.Template(text).render(role_vars)


@dataclass
class NatsServer:
    name: str
    client_port: int
    route_port: int
    monitor_port: int
    config: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"tls://localhost:{self.client_port}"

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"


@dataclass
class NatsCluster:
    root: Path
    servers: list[NatsServer] = field(default_factory=list)

    @classmethod
    def create(cls, root: Path, size: int = 3) -> NatsCluster:
        root.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        cert.private_key_pem.write_to_path(str(root / "nats.key"))
        cert.cert_chain_pems[0].write_to_path(str(root / "nats.crt"))
        ca.cert_pem.write_to_path(str(root / "ca.crt"))
        cluster = cls(root)
        for index in range(size):
            name = f"n{index}"
            cluster.servers.append(
                NatsServer(name, free_port(), free_port(), free_port(), root / f"{name}.conf")
            )
        for server in cluster.servers:
            server.config.write_text(cluster._config(server))
        for index in range(size):
            cluster.start(index)
        cluster.wait_for_jetstream()
        return cluster

    def _config(self, server: NatsServer) -> str:
        routes = ", ".join(
            f'"nats-route://route:{ROUTE_PASSWORD}@localhost:{other.route_port}"'
            for other in self.servers
            if other is not server
        )
        tls = (
            f'cert_file: "{self.root}/nats.crt", key_file: "{self.root}/nats.key", '
            f'ca_file: "{self.root}/ca.crt", timeout: 2'
        )
        return f"""
server_name: {server.name}
listen: 127.0.0.1:{server.client_port}
http: 127.0.0.1:{server.monitor_port}
max_payload: 67108864
jetstream {{ store_dir: "{self.root}/{server.name}", max_memory_store: 64MB, max_file_store: 2GB }}
tls {{ {tls} }}
authorization {{ users = [
  {{ user: codegraph, password: "{NATS_PASSWORD}", permissions: {permissions("app")} }}
  {{ user: codegraph-admin, password: "{ADMIN_PASSWORD}", permissions: {permissions("admin")} }}
] }}
cluster {{
  name: codegraph
  listen: 127.0.0.1:{server.route_port}
  tls {{ {tls}, verify: true }}
  authorization {{ user: route, password: "{ROUTE_PASSWORD}" }}
  routes = [ {routes} ]
}}
"""

    def start(self, index: int) -> None:
        server = self.servers[index]
        log = open(self.root / f"{server.name}.log", "ab")  # noqa: SIM115 (the child keeps it)
        server.process = subprocess.Popen(
            [NATS_SERVER, "-c", str(server.config)], stdout=log, stderr=subprocess.STDOUT
        )

    def stop(self, index: int, sig: int = signal.SIGTERM) -> None:
        process = self.servers[index].process
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            process.wait(30)

    def close(self) -> None:
        for index in range(len(self.servers)):
            self.stop(index, signal.SIGKILL)

    def wait_for_jetstream(self, timeout: float = 30) -> None:
        """Until every running server answers its health check (JetStream included)."""
        deadline = time.monotonic() + timeout
        for server in self.servers:
            if server.process is None or server.process.poll() is not None:
                continue
            while True:
                try:
                    if httpx.get(server.monitor_url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"{server.name} did not come up"
                time.sleep(0.2)

    def replication(self, index: int) -> dict:
        """The [replication] settings of the app host beside server index."""
        ordered = [self.servers[index], *(s for s in self.servers if s is not self.servers[index])]
        return {
            "mode": "jetstream",
            "servers": [server.url for server in ordered],
            "ca_file": str(self.root / "ca.crt"),
        }


class Relay:
    """A TCP relay on loopback to a server's port that can hold what clients send (not
    what they receive): bytes a host sent its nats-server wait here until released, as
    on a congested or broken link. Makes a publish's fate unknown to its host."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._holding = False
        self._held: list[tuple[socket.socket, bytes]] = []
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"tls://localhost:{self.port}"

    def hold(self) -> None:
        with self._lock:
            self._holding = True

    def release(self) -> None:
        """Deliver what was held, in order, then relay as before."""
        with self._lock:
            self._holding = False
            for destination, data in self._held:
                with contextlib.suppress(OSError):
                    destination.sendall(data)
            self._held.clear()

    def refuse(self) -> None:
        """Refuse new connections (the port closed); those open go on as before."""
        with contextlib.suppress(OSError):  # (a thread blocked in accept keeps it open)
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def accept_again(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def close(self) -> None:
        for sock in (self._listener, *self._sockets):
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                return
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, destination: socket.socket, upstream: bool) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                for sock in (source, destination):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                return
            with self._lock:
                if upstream and self._holding:
                    self._held.append((destination, data))
                    continue
                try:
                    destination.sendall(data)
                except OSError:
                    return


def write_keys(root: Path) -> None:
    keys = root / "config" / ".env"
    keys.parent.mkdir(parents=True, exist_ok=True)
    keys.write_text(f"CODEGRAPH_API_KEY={API_KEY}\nCODEGRAPH_NATS_PASSWORD={NATS_PASSWORD}\n")
    admin = root / "config" / "nats-admin.keys"
    admin.write_text(f"CODEGRAPH_NATS_ADMIN_PASSWORD={ADMIN_PASSWORD}\n")


def replication_section(cluster: NatsCluster, root: Path, index: int) -> dict:
    """The [replication] settings of the app host under root, beside server index."""
    write_keys(root)
    admin_keys = str(root / "config" / "nats-admin.keys")
    return {**cluster.replication(index), "admin_keys_file": admin_keys}


def admin_settings(cluster: NatsCluster, root: Path) -> Settings:
    """The settings codegraph-admin runs with on an app host (its admin keys under root)."""
    return parse_settings(config_for(root, replication=replication_section(cluster, root, 0)))


def create_stream(cluster: NatsCluster, root: Path, replicas: int = 3) -> dict:
    settings = admin_settings(cluster, root)
    spec = StreamSpec(replicas, 3600, 1 << 30, 64 << 20)
    deadline = time.monotonic() + 30
    while True:  # the cluster elects its JetStream leader first
        try:
            return asyncio.run(ensure_stream(settings, spec, check=False, create=True))
        except Exception:
            assert time.monotonic() < deadline, "the stream could not be created"
            time.sleep(0.5)


def start_replica(root: Path, cluster: NatsCluster, index: int, **sections: dict) -> Served:
    """A codegraph-api process writing through the cluster, beside server index."""
    replication = {**replication_section(cluster, root, index), **sections.pop("replication", {})}
    return start_server(root, tls=False, replication=replication, **sections)


def on_the_stream(cluster: NatsCluster, root: Path, action, *, admin: bool = True) -> object:
    """Run action(jetstream) connected as the NATS admin (what an operator does to the
    stream behind the hosts' backs) or, admin=False, as the service's own user."""
    import nats

    settings = admin_settings(cluster, root)

    async def run() -> object:
        connection = await nats.connect(**connection_options(settings, admin=admin))
        try:
            return await action(connection.jetstream())
        finally:
            await connection.close()

    return asyncio.run(run())


def cluster_with_stream(root: Path) -> Iterator[NatsCluster]:
    """A cluster and its stream (a module's fixture), closed after."""
    cluster = NatsCluster.create(root / "nats")
    create_stream(cluster, root / "admin")
    yield cluster
    cluster.close()


def at_current_format(hosts: list[Served]) -> None:
    """The fleet's entry format raised to this release's newest (as playbooks/deploy.yml
    does), on every host before the test goes on."""
    with hosts[0].client() as http:
        raised = http.post("/replication/entry-format", json={"version": FORMAT})
        assert raised.status_code == 200, raised.text
    seq = int(raised.headers["x-codegraph-seq"])
    deadline = time.monotonic() + 30
    for host in hosts:
        while host.client().get("/replication").json()["applied_seq"] < seq:
            assert time.monotonic() < deadline, "the entry format did not reach every host"
            time.sleep(0.1)


def fresh_fleet(root: Path) -> Iterator[tuple[NatsCluster, list[Served]]]:
    """A fresh cluster, its stream and three hosts at the current entry format, for a test
    that breaks them."""
    cluster = NatsCluster.create(root / "nats")
    create_stream(cluster, root / "admin")
    hosts = [start_replica(root / f"app{index}", cluster, index) for index in range(3)]
    at_current_format(hosts)
    yield cluster, hosts
    for host in hosts:
        host.stop(signal.SIGKILL)
    cluster.close()
