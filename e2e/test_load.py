"""The load generator's own account of failures: it is what a rollout test's failure message
is made of, so it must say the truth about why a request failed and where it went."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e import load as load_module
from e2e.load import Load, _pod_address, client_socket
from tests.serving.harness import free_port

CONNTRACK = "\n".join(  # /proc/net/nf_conntrack as the node shows it (kube-proxy masquerades)
    [
        "ipv4 2 tcp 6 38 TIME_WAIT src=192.0.2.2 dst=10.96.9.107 sport=52713 dport=80 "
        "src=10.244.0.27 dst=10.244.0.1 sport=8080 dport=11026 [ASSURED] mark=0 zone=0 use=2",
        "ipv4 2 tcp 6 9 CLOSE src=192.0.2.2 dst=10.96.9.107 sport=52713 dport=80 "
        "src=10.244.0.31 dst=10.244.0.1 sport=8080 dport=4410 mark=0 zone=0 use=2",
        "ipv4 2 tcp 6 9 CLOSE src=192.0.2.2 dst=10.96.9.107 sport=40000 dport=9000 "
        "src=10.244.0.40 dst=10.244.0.1 sport=9000 dport=8080 mark=0 zone=0 use=2",
    ]
)


def test_the_pod_a_connection_went_to_is_read_from_conntrack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = tmp_path / "nf_conntrack"
    table.write_text(CONNTRACK)
    monkeypatch.setattr(load_module, "CONNTRACK", table)
    assert _pod_address(52713, 80) == "10.244.0.31", "the live entry, not the one in TIME_WAIT"
    assert _pod_address(40000, 80) is None, "another Service port"
    assert _pod_address(8080, 80) is None, "a reply's port is not a source port"
    assert _pod_address(None, 80) is None
    monkeypatch.setattr(load_module, "CONNTRACK", tmp_path / "missing")
    assert _pod_address(52713, 80) is None


def test_a_refused_connection_is_recorded_with_its_errno_phase_and_port() -> None:
    closed = free_port()
    with Load(f"127.0.0.1:{closed}", pause=0.05, first_answer=0) as load:
        time.sleep(0.3)
    failures = load.failures_seen()
    assert failures and load.failed() == len(failures)
    first = failures[0]
    assert (first.phase, first.reason.split(":")[0]) == ("connect", "ECONNREFUSED"), first
    assert first.local_port is not None and first.local_port != closed
    assert "connect: ECONNREFUSED" in first.describe() and "from port" in first.describe()


class _Answers(http.server.BaseHTTPRequestHandler):
    """Answers every POST with `status` and `body`."""

    status, body = 503, b'{"error": "model not ready"}'

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


class _Unavailable(_Answers):
    pass


class _Answering(_Answers):
    status, body = 200, b'{"model_name": "cancer", "model_version": "1", "outputs": []}'


@pytest.fixture
def unavailable() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_an_http_error_is_recorded_with_its_status_and_body(unavailable: int) -> None:
    with Load(f"127.0.0.1:{unavailable}", pause=0.05, first_answer=0) as load:
        time.sleep(0.3)
    failures = load.failures_seen()
    assert failures and load.answers["503"] == len(failures)
    assert failures[0].phase == "answer"
    assert failures[0].reason == 'HTTP 503: {"error": "model not ready"}'


def test_counting_starts_once_the_service_has_answered() -> None:
    """A Service whose rules are not written yet refuses; that is before the load, not in it."""
    port = free_port()
    servers: list[http.server.ThreadingHTTPServer] = []

    def open_later() -> None:
        time.sleep(0.5)
        servers.append(http.server.ThreadingHTTPServer(("127.0.0.1", port), _Answering))
        servers[0].serve_forever()

    threading.Thread(target=open_later, daemon=True).start()
    try:
        with Load(f"127.0.0.1:{port}", pause=0.05, first_answer=10) as load:
            time.sleep(0.3)
    finally:
        servers[0].shutdown()
        servers[0].server_close()
    assert load.failures_seen() == [] and load.answered_by("1") == load.served() > 0


def test_a_service_that_never_answers_stops_the_load_before_it_starts() -> None:
    closed = free_port()
    with pytest.raises(AssertionError, match=rf"127.0.0.1:{closed} never answered in 0.5s: connect: ECONNREFUSED"):
        Load(f"127.0.0.1:{closed}", first_answer=0.5).__enter__()


def test_the_loads_bound_ports_never_keep_a_server_from_listening() -> None:
    """The load binds each connection's port before connecting, and closes first, so each
    port then waits in TIME_WAIT for 60 s. A server listening with SO_REUSEADDR (as asyncio's
    and aiohttp's do) must still get such a port: the next test's operator picks one."""

    def listen_on(port: int) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("0.0.0.0", port))
            listener.listen()
        finally:
            listener.close()

    def used_and_closed(sock: socket.socket) -> int:
        sock.connect(target.getsockname())
        accepted, _ = target.accept()
        port: int = sock.getsockname()[1]
        sock.close()  # the client closes first: its side waits in TIME_WAIT
        time.sleep(0.05)
        accepted.close()
        time.sleep(0.05)
        return port

    target = socket.socket()
    target.bind(("127.0.0.1", 0))
    target.listen()
    plain = socket.socket()
    plain.bind(("", 0))
    with pytest.raises(OSError, match="Address already in use"):  # what CI met
        listen_on(used_and_closed(plain))
    listen_on(used_and_closed(client_socket(timeout=5)))
    target.close()
