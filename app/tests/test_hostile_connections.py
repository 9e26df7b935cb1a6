"""Hostile clients against a real server over TLS: huge or unfinished headers, stalled
bodies and handshakes, bodies that would become gigabytes, parses that take seconds.
The server answers each with a 4xx or closes the connection, its memory stays bounded,
and /health answers within a second throughout."""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from conftest import API_KEY, Served, start_server

pytestmark = pytest.mark.slow
LIMITS = {
    "header_timeout_seconds": 1.0,
    "body_timeout_seconds": 1.0,
    "tls_timeout_seconds": 1.0,
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Iterator[Served]:
    served = start_server(tmp_path_factory.mktemp("hostile"), server=LIMITS)
    yield served
    served.stop()


def _peak_rss(served: Served) -> int:
    """The process's high-water mark of resident memory, in bytes."""
    with open(f"/proc/{served.process.pid}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def _tls(served: Served, port: int) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(served.ca_file))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname="localhost")


def _answer(sock: socket.socket, timeout: float = 10) -> bytes:
    """What the server sends until it closes the connection."""
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except (ConnectionResetError, ssl.SSLError):
        pass
    return received


@contextmanager
def health_watch(served: Served) -> Iterator[list[float]]:
    """Poll /health on a new connection every 50 ms meanwhile; yields the latencies."""
    latencies: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        with served.client(key=None) as http:
            while not stop.is_set():
                started = time.monotonic()
                assert http.get("/health").status_code == 200
                latencies.append(time.monotonic() - started)
                stop.wait(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        yield latencies
    finally:
        stop.set()
        poller.join()
    assert latencies and max(latencies) < 1.0, max(latencies)


def _send_until_answered(
    sock: ssl.SSLSocket, head: bytes, filler: bytes, total: int
) -> tuple[int, bytes]:
    """Send head, then filler until total bytes of it went or the server answered (as
    a client that reads while it writes does); returns how much filler went, and the
    answer's first bytes."""
    sock.sendall(head)
    sent, answer = 0, b""
    try:
        while sent < total:
            if select.select([sock], [], [], 0)[0]:  # TLS records: maybe only a session ticket
                sock.setblocking(False)
                try:
                    answer = sock.recv(65536)
                except ssl.SSLWantReadError:
                    pass
                finally:
                    sock.setblocking(True)
                if answer:
                    break
            sock.sendall(filler)
            sent += len(filler)
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        pass  # closed: the server read no further
    return sent, answer + _answer(sock)


def test_a_100_mb_header_is_431_after_a_few_kilobytes_on_both_ports(hostile):
    before = _peak_rss(hostile)
    for port in (hostile.port, hostile.metrics_port):
        sock = _tls(hostile, port)
        head = b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: "
        sent, answer = _send_until_answered(sock, head, b"a" * (1 << 20), 100 << 20)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert b"server.max_header_bytes" in answer
        assert sent < 8 << 20, sent
    assert _peak_rss(hostile) - before < 32 << 20
    with hostile.client() as http:
        assert http.get("/stats").status_code == 200


def test_unfinished_headers_are_408_and_closed_and_health_answers_meanwhile(hostile):
    with health_watch(hostile):
        stalled = []
        for index in range(300):
            sock = _tls(hostile, hostile.metrics_port if index % 10 == 0 else hostile.port)
            sock.sendall(b"GET /stats HTTP/1.1\r\nHost: localhost\r\nAuthor")
            stalled.append(sock)
        time.sleep(1.5)
        answers = [_answer(sock, timeout=5) for sock in stalled]
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers), {
        answer[:40] for answer in answers
    }
    assert b"server.header_timeout_seconds" in answers[0]
    for sock in stalled:
        sock.close()


def test_a_stalled_tls_handshake_and_a_stalled_body_are_dropped(hostile):
    raw = [socket.create_connection(("127.0.0.1", hostile.port)) for _ in range(20)]
    started = time.monotonic()
    assert all(_answer(sock) == b"" for sock in raw)  # closed, no handshake ever made
    assert time.monotonic() - started < 5
    sock = _tls(hostile, hostile.port)
    sock.sendall(
        f"POST /nodes HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {API_KEY}\r\n"
        'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"nodes": ['.encode()
    )
    answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"server.body_timeout_seconds" in answer
    for each in (*raw, sock):
        each.close()
    context = ssl.create_default_context(cafile=str(hostile.ca_file))
    metrics = httpx.get(f"https://localhost:{hostile.metrics_port}/metrics", verify=context).text
    for reason in ("header_too_large", "header_timeout", "body_timeout"):
        assert f'codegraph_http_connections_refused_total{{reason="{reason}"}}' in metrics


def test_sixty_megabytes_of_empty_nodes_is_413_before_most_of_it_is_read(hostile):
    """The JSON values are counted as the body arrives: refused once past the limit
    (4,000,000 values, 12 MB of this body), in memory that does not grow with it."""
    before = _peak_rss(hostile)
    with health_watch(hostile):
        sock = _tls(hostile, hostile.port)
        head = (
            f"POST /nodes HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {API_KEY}\r\n"
            "Content-Type: application/json\r\nContent-Length: 62914560\r\n\r\n"
        ).encode()
        filler = b"{}," * (1 << 18)  # 768 KiB
        sent, answer = _send_until_answered(sock, head + b'{"nodes":[', filler, 60 << 20)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert b"server.max_request_values" in answer
    assert sent < 24 << 20, sent
    assert _peak_rss(hostile) - before < 32 << 20, _peak_rss(hostile) - before
    with hostile.client() as http:  # and the same body whole, as a client library sends it
        body = b'{"nodes":[' + b",".join([b"{}"] * 20_000_000) + b"]}"
        refused = http.post("/nodes", content=body, headers={"content-type": "application/json"})
        assert refused.status_code == 413 and "max_request_values" in refused.text


def test_a_four_megabyte_parse_leaves_health_responsive(hostile):
    with open(threading.__file__) as module:
        source = module.read()
    content = (source + "\n") * (4_000_000 // len(source))
    with health_watch(hostile), hostile.client() as http:
        answer = http.post(
            "/parse", json={"files": [{"path": "big.py", "content": content}], "store": False}
        )
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["nodes"]
