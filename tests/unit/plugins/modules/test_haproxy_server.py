"""haproxy_server against a real HAProxy (the controller's, started here with a
configuration of its own) in front of a real HTTP server: run as Ansible runs a module
(a process given its arguments in a file), each answer read from its JSON output.

Run by `ansible-test units` on the installed collection (tests/test_collection.py)."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

MODULE = Path(__file__).resolve().parents[4] / "plugins/modules/haproxy_server.py"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
CONFIG = """
global
    stats socket {socket} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:{front}
    default_backend app
backend app
    option httpchk GET /health
    default-server check inter 100ms fastinter 100ms downinter 100ms fall 1 rise 1
    server app1 127.0.0.1:{app}
"""


class App(http.server.BaseHTTPRequestHandler):
    """/health answers at once; /slow?s=N after N seconds (a request in flight)."""

    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            time.sleep(float(self.path.split("=", 1)[1]))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def haproxy(tmp_path):
    if not os.access(HAPROXY, os.X_OK):
        pytest.fail(f"no haproxy at {HAPROXY}: scripts/bootstrap-host.sh installs it")
    app = http.server.ThreadingHTTPServer(("127.0.0.1", 0), App)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    admin, front = tmp_path / "admin.sock", _free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(CONFIG.format(socket=admin, front=front, app=app.server_address[1]))
    process = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not admin.exists() or run(admin, state="ready", timeout=1)["status"] != "UP":
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "HAProxy did not start"
            time.sleep(0.1)
        yield {"socket": admin, "front": front}
    finally:
        process.terminate()
        process.wait(10)
        app.shutdown()


def run(socket_path: Path, check_mode: bool = False, **arguments: object) -> dict:
    """The module as Ansible runs it; its JSON answer (failed ones included)."""
    args = {"socket": str(socket_path), "backend": "app", "server": "app1", **arguments}
    args_file = socket_path.parent / "args.json"
    args_file.write_text(
        json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check_mode}})
    )
    result = subprocess.run(
        [sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, check=False
    )
    return json.loads(result.stdout)


def admin_state(socket_path: Path) -> str:
    with socket.socket(socket.AF_UNIX) as connection:
        connection.connect(str(socket_path))
        connection.sendall(b"show stat\n")
        answer = b"".join(iter(lambda: connection.recv(65536), b"")).decode()
    row = next(line for line in answer.splitlines() if line.startswith("app,app1,"))
    return row.split(",")[17]  # the status column


def test_drained_takes_the_server_out_once_and_is_idempotent(haproxy):
    first = run(haproxy["socket"], state="drained")
    assert first["changed"] is True and first["status"] == "DRAIN", first
    assert admin_state(haproxy["socket"]) == "DRAIN"
    again = run(haproxy["socket"], state="drained")
    assert again["changed"] is False and again["status"] == "DRAIN", again


def test_ready_puts_it_back_once_haproxy_sees_it_up(haproxy):
    run(haproxy["socket"], state="drained")
    back = run(haproxy["socket"], state="ready")
    assert back["changed"] is True and back["status"] == "UP", back
    assert run(haproxy["socket"], state="ready")["changed"] is False


def test_check_mode_reports_the_change_and_touches_nothing(haproxy):
    result = run(haproxy["socket"], check_mode=True, state="drained")
    assert result["changed"] is True, result
    assert admin_state(haproxy["socket"]) == "UP"


def _in_flight(front: int, seconds: float) -> threading.Thread:
    def request() -> None:
        with socket.create_connection(("127.0.0.1", front)) as connection:
            connection.sendall(f"GET /slow?s={seconds} HTTP/1.0\r\n\r\n".encode())
            connection.recv(1024)

    thread = threading.Thread(target=request)
    thread.start()
    time.sleep(0.3)  # reached the app
    return thread


def test_drained_waits_for_the_requests_in_flight(haproxy):
    request = _in_flight(haproxy["front"], 1.5)
    result = run(haproxy["socket"], state="drained", timeout=10)
    request.join()
    assert result["changed"] is True and result["waited"] >= 0.8, result


def test_drained_fails_when_requests_outlast_the_timeout(haproxy):
    request = _in_flight(haproxy["front"], 3)
    result = run(haproxy["socket"], state="drained", timeout=0.5)
    request.join()
    assert result.get("failed") is True, result
    assert "requests still in flight after 0.5 s" in result["msg"], result


def test_an_unknown_server_or_socket_is_a_clear_failure(haproxy, tmp_path):
    unknown = run(haproxy["socket"], server="app9", state="drained")
    assert unknown.get("failed") is True and "has no server app/app9" in unknown["msg"], unknown
    missing = run(tmp_path / "nowhere.sock", state="drained")
    assert missing.get("failed") is True and "nowhere.sock" in missing["msg"], missing
