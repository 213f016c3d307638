"""What a hostile client costs the model server: its memory before and after, and its answer.

Two scenarios, each against a fresh `modeldeploy serve` of breast-cancer v1 (the code on
PYTHONPATH, or the installed one), trained into a scratch folder first:

- stacked-gzip: requests whose Content-Encoding lists N codings (`gzip, gzip, ...`), the
  body gzipped N times (stored blocks, so it is quick to make); issue 26 measured +422 MB
  for one such request;
- held-bodies: N clients each declare a 16 MiB body and send 15 MiB of it, then wait.

It prints the server's resident memory (VmRSS) before and after, its peak (VmHWM), and
what it answered. A measurement, not a test: the tests that hold the limits are
tests/serving/test_compression.py, test_limits.py and test_slow_bodies.py.

    .venv/bin/python benchmarks/hostile.py stacked-gzip --codings 10800 --requests 3
    .venv/bin/python benchmarks/hostile.py held-bodies --clients 20
    # the same against other code, e.g. a checkout of main:
    PYTHONPATH=../main/operator:../main/serving:../main/cli .venv/bin/python benchmarks/hostile.py held-bodies
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/ and examples/ are folders of the repository, not packages installed

from tests.conftest import load_training_script  # noqa: E402
from tests.serving.harness import free_port  # noqa: E402

MODELDEPLOY = str(Path(sys.executable).with_name("modeldeploy"))
NAME = "breast-cancer"
BODY_BYTES = 16 * 1024 * 1024  # the default --max-request-bytes


class Server:
    def __init__(self, model: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                MODELDEPLOY,
                "serve",
                "--model",
                str(model),
                "--name",
                NAME,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.1)
        time.sleep(0.5)

    def memory_mb(self, field: str = "VmRSS") -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) // 1024
        raise AssertionError(field)

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@contextlib.contextmanager
def serving(model: Path) -> Iterator[Server]:
    server = Server(model)
    try:
        yield server
    finally:
        server.close()


def stacked_gzip(model: Path, request: bytes, codings: int, requests: int) -> None:
    body = request
    for _ in range(codings):
        body = gzip.compress(body, 0, mtime=0)  # stored blocks: each layer a copy, not a compression
    head = (
        f"POST /v2/models/{NAME}/infer HTTP/1.1\r\nHost: x\r\nContent-Encoding: {', '.join(['gzip'] * codings)}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with serving(model) as server:
        before = server.memory_mb()
        answer = b""
        for _ in range(requests):
            with socket.create_connection(("127.0.0.1", server.port), timeout=600) as sock:
                sock.sendall(head + body)
                answer = sock.recv(65536)
        time.sleep(0.5)
        after, peak = server.memory_mb(), server.memory_mb("VmHWM")
    status = answer.split(b"\r\n", 1)[0].decode()
    print(
        f"{requests} request(s) listing {codings} gzip codings (head {len(head)} bytes, body {len(body)} bytes): "
        f"RSS {before} MB -> {after} MB, peak {peak} MB (+{peak - before} MB); answered {status!r}"
    )


def held_bodies(model: Path, clients: int) -> None:
    sent_each = BODY_BYTES - 1024 * 1024
    with serving(model) as server:
        before = server.memory_mb()
        sockets = []
        for _ in range(clients):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(b"POST /v2/models/%s/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (
                NAME.encode(), BODY_BYTES))  # fmt: skip
            sock.setblocking(False)
            sent, deadline = 0, time.monotonic() + 5
            while sent < sent_each and time.monotonic() < deadline:  # a refused one stops reading
                with contextlib.suppress(BlockingIOError):
                    sent += sock.send(b" " * 65536)
                    continue
                time.sleep(0.001)
            sockets.append(sock)
        time.sleep(1)
        held, peak = server.memory_mb(), server.memory_mb("VmHWM")
        refused = 0
        for sock in sockets:
            with contextlib.suppress(OSError):
                refused += b" 503 " in sock.recv(200)[:20]
            sock.close()
    print(
        f"{clients} clients each holding a 16 MiB body open (15 MiB sent): RSS {before} MB -> {held} MB "
        f"(+{held - before} MB), peak {peak} MB; {refused} answered 503 at once"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    scenarios = parser.add_subparsers(dest="scenario", required=True)
    stacked = scenarios.add_parser("stacked-gzip", help="one header listing many content codings")
    stacked.add_argument("--codings", type=int, default=10_800, help="codings listed (10,800 fill a 64 KiB head)")
    stacked.add_argument("--requests", type=int, default=1, help="requests sent one after another")
    held = scenarios.add_parser("held-bodies", help="many large bodies held open at once")
    held.add_argument("--clients", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="modeldeploy-hostile-") as scratch:
        folder = Path(scratch)
        load_training_script().train(folder)
        model = folder / f"{NAME}-v1.onnx"
        if args.scenario == "stacked-gzip":
            stacked_gzip(model, (folder / f"{NAME}-request.json").read_bytes(), args.codings, args.requests)
        else:
            held_bodies(model, args.clients)


if __name__ == "__main__":
    main()
