"""Limits that protect the other requests, driven against a real `modeldeploy serve` process.

Each test speaks raw HTTP over a socket where the point is what a hostile or broken client
does (an endless header, a head that trickles in, a connection that never speaks), and
asserts what the server does about it: the status it answers, that it closes the
connection, and that other clients are still answered.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from tests.conftest import ExampleModels
from tests.serving.harness import ServeProcess

MAX_HEADER_BYTES = 8192
LIMIT = 16 * 1024 * 1024


@pytest.fixture(scope="module")
def served(example_models: ExampleModels) -> Iterator[ServeProcess]:
    process = ServeProcess(
        "--model",
        str(example_models.path("breast-cancer", "2")),
        "--name",
        "breast-cancer",
        "--max-header-bytes",
        str(MAX_HEADER_BYTES),
        "--header-timeout-seconds",
        "1",
        "--idle-timeout-seconds",
        "1",
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.close()


def connect(served: ServeProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", served.port), timeout=15)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a timeout fails the test)."""
    answer = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def still_answers(served: ServeProcess) -> None:
    assert httpx.get(f"{served.url}/v2/health/live", timeout=10).status_code == 200


def test_a_header_over_the_cap_is_431_and_the_connection_closed(served: ServeProcess) -> None:
    with connect(served) as sock:
        head = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Padding: "
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head)
            for _ in range(64 * 16):  # up to 64 MB of one header value; the server stops reading early
                sock.sendall(b"a" * 65536)
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:200]
    assert b"connection: close" in answer
    assert answer.endswith(b'{"error":"the request line and headers are over the limit of 8192 bytes"}')
    still_answers(served)


def test_a_header_under_the_cap_is_answered(served: ServeProcess) -> None:
    response = httpx.get(f"{served.url}/v2/health/live", headers={"x-padding": "a" * 7000}, timeout=10)
    assert response.status_code == 200


def test_a_head_that_trickles_in_is_408_and_closed(served: ServeProcess) -> None:
    with connect(served) as sock:
        head = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for byte in head:  # one byte every 50 ms: each arrives well within the idle timeout
                sock.sendall(bytes([byte]))
                if select.select([sock], [], [], 0.05)[0]:
                    break
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:200]
    assert answer.endswith(b'{"error":"the request head did not arrive within 1 seconds"}')


def test_a_connection_that_never_sends_a_request_is_closed(served: ServeProcess) -> None:
    with connect(served) as sock:
        assert read_until_closed(sock) == b""  # closed by the server, no answer: nothing was asked


def test_an_idle_keep_alive_connection_is_closed(served: ServeProcess) -> None:
    with connect(served) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b'{"live":true}')


def largest_body(rows: np.ndarray) -> bytes:
    """A JSON request as close under the 16 MiB default limit as whole rows allow."""
    per_row = len(orjson.dumps(rows[:1].tolist()))
    count = LIMIT // per_row
    while True:
        batch = np.resize(rows, (count, rows.shape[1]))
        body = orjson.dumps(
            {"inputs": [{"name": "input", "shape": list(batch.shape), "datatype": "FP32", "data": batch.tolist()}]}
        )
        if len(body) <= LIMIT:
            return body
        count -= max(1, (len(body) - LIMIT) // per_row + 1)


def peak_memory_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def test_the_largest_body_does_not_stall_small_requests(served: ServeProcess, cancer_rows: np.ndarray) -> None:
    body = largest_body(cancer_rows)
    assert LIMIT - 2000 < len(body) <= LIMIT
    pid = served.process.pid
    with httpx.Client(base_url=served.url, timeout=60) as small:
        small_body = {
            "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": cancer_rows[0].tolist()}]
        }
        assert small.post("/v2/models/breast-cancer/infer", json=small_body).status_code == 200
        before = peak_memory_bytes(pid)
        with connect(served) as big:
            big.sendall(
                b"POST /v2/models/breast-cancer/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body)
            )
            sender = threading.Thread(target=big.sendall, args=(body,))
            sender.start()
            sender.join(60)
            # The whole body is sent: the server reads the rest of it and parses it. Small requests
            # sent now must be answered before the big one is, not queued behind its parse.
            answered_meanwhile = 0
            while not select.select([big], [], [], 0)[0] and answered_meanwhile < 5:
                assert small.post("/v2/models/breast-cancer/infer", json=small_body).status_code == 200
                answered_meanwhile += 1
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += big.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:300]
        assert answered_meanwhile == 5, "small requests waited behind the large one"
        assert children(pid), "the large body was not parsed in the helper process"
        # Memory: the server keeps the body, its copy for the helper and the arrays, not millions
        # of Python floats (which took over 40 times the body before).
        assert peak_memory_bytes(pid) - before < 5 * len(body)
    still_answers(served)


@pytest.fixture(scope="module")
def strict(example_models: ExampleModels) -> Iterator[ServeProcess]:
    """A server with a 1 s body deadline and room for 3 connections, which stay open a while."""
    process = ServeProcess(
        "--model",
        str(example_models.path("breast-cancer", "2")),
        "--name",
        "breast-cancer",
        "--body-timeout-seconds",
        "1",
        "--max-connections",
        "3",
        "--idle-timeout-seconds",
        "30",
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.close()


def trickle(sock: socket.socket, data: bytes, every: float) -> None:
    """data one byte at a time, until it is sent or the server answers or closes."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        for byte in data:
            sock.sendall(bytes([byte]))
            if select.select([sock], [], [], every)[0]:
                return


def test_a_body_that_trickles_in_is_408_and_closed(strict: ServeProcess) -> None:
    with connect(strict) as sock:
        sock.sendall(b"POST /v2/models/breast-cancer/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        started = time.monotonic()
        trickle(sock, b"{" + b" " * 999, every=0.1)
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:200]
    assert answer.endswith(b'{"error":"the request body did not arrive within 1 seconds of its head"}')
    assert time.monotonic() - started < 5


def test_a_body_still_coming_after_an_early_answer_is_cut_off(strict: ServeProcess) -> None:
    # Refused on its Content-Length (413) before a byte of the body was read: the client may
    # go on sending it, but not forever.
    with connect(strict) as sock:
        sock.sendall(b"POST /v2/models/breast-cancer/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(100):  # 10 s at most; the server closes after 1
                sock.sendall(b" " * 10)
                time.sleep(0.1)
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]


def test_connections_past_the_cap_get_503_for_inference_and_answers_for_probes(
    strict: ServeProcess, cancer_rows: np.ndarray
) -> None:
    body = orjson.dumps(
        {"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": cancer_rows[0].tolist()}]}
    )
    infer = b"POST /v2/models/breast-cancer/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    held = [connect(strict) for _ in range(3)]
    try:
        time.sleep(0.2)  # the server has taken all three
        with connect(strict) as sock:
            sock.sendall(infer)
            answer = read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer[:200]
        assert b"retry-after: 1\r\n" in answer and b"connection: close\r\n" in answer
        assert answer.endswith(
            b'{"error":"the server has its limit of 3 connections open (--max-connections); retry on a new one"}'
        )
        with connect(strict) as sock:  # a probe is still answered, and the connection closed
            sock.sendall(b"GET /v2/models/breast-cancer/ready HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close\r\n" in answer
        with held[0] as sock:  # a connection under the cap is served as always
            sock.sendall(infer)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the server forgets the closed ones
        with connect(strict) as sock:
            sock.sendall(infer)
            if sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n"):
                return
        time.sleep(0.1)
    raise AssertionError("closed connections still counted against the cap")
