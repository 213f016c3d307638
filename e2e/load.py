"""A load generator of real rows for a model's Service: the rollout tests, benchmark and demo share it.

Each request carries a few rows of scikit-learn's breast-cancer data set, cycled in order,
on a fresh connection (so kube-proxy balances every request, not every connection, and
each track's pods see the same mix of rows). Every answer is counted by status, every 200
by the version that answered it, and every request's latency is kept, so a caller can say
how many requests failed during a promotion and what its p99 was.

Every failed request is kept whole: when (wall clock), why (connection refused, reset,
timed out, an HTTP status and the start of its body), in which phase (connect, send,
answer), and where it went: the pod address kube-proxy sent it to, read from the node's
connection tracking table by the request's source port. e2e/timeline.py sets them beside
what the cluster did at the time.
"""

from __future__ import annotations

import errno
import http.client
import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer

ROWS_PER_REQUEST = 4
CONNTRACK = Path("/proc/net/nf_conntrack")


@dataclass(frozen=True)
class Failure:
    """One request that got no 200."""

    at: float  # wall-clock seconds when it failed
    phase: str  # connect | send | answer
    reason: str  # ECONNREFUSED, ECONNRESET, timeout, HTTP 503 ..., with the error's text
    local_port: int | None
    pod_address: str | None  # where kube-proxy sent it (conntrack), when that could be read

    def describe(self) -> str:
        where = f"to pod {self.pod_address}" if self.pod_address else "to an unknown pod"
        return f"{self.phase}: {self.reason} ({where}, from port {self.local_port or '?'})"


def _reason(error: BaseException) -> str:
    if isinstance(error, socket.timeout | TimeoutError):
        return f"timeout: {error}"
    code = getattr(error, "errno", None)
    name = errno.errorcode.get(code, "") if isinstance(code, int) else ""
    return f"{name or type(error).__name__}: {error}"


def _pod_address(local_port: int | None, service_port: int) -> str | None:
    """The pod address a connection from `local_port` was translated to (its conntrack entry)."""
    if local_port is None:
        return None
    try:
        table = CONNTRACK.read_text()
    except OSError:
        return None
    found = None
    for line in table.splitlines():
        fields = line.split()
        sources = [f.removeprefix("src=") for f in fields if f.startswith("src=")]
        ports = [f for f in fields if f.startswith(("sport=", "dport="))]
        # The original direction (from us, to the Service), then the reply (from the pod).
        if len(sources) == 2 and ports[:2] == [f"sport={local_port}", f"dport={service_port}"]:
            found = sources[1]
            if "TIME_WAIT" not in fields:  # an older connection from the same port lingers in TIME_WAIT
                return found
    return found


def client_socket(timeout: float) -> socket.socket:
    """A TCP socket bound to a port of its own before it connects, so even a refused
    connection has a source port to look up in the conntrack table. With SO_REUSEADDR:
    without it a port bound here keeps any server from listening on it while the connection
    lives and for the 60 s it then waits in TIME_WAIT (the client closes first). CI saw the
    next test's operator fail to bind its health port, picked free a moment before, twice:
    "address already in use"."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("", 0))
    return sock


def breast_cancer_bodies(scale: dict[str, float] | None = None) -> list[bytes]:
    """OIP v2 request bodies covering the whole data set, ROWS_PER_REQUEST rows each; `scale`
    multiplies the named features (a unit error: {"mean area": 10.0}) to make drift."""
    data = load_breast_cancer()
    rows = data.data.astype(np.float32)
    for feature, factor in (scale or {}).items():
        rows[:, list(data.feature_names).index(feature)] *= factor
    usable = len(rows) // ROWS_PER_REQUEST * ROWS_PER_REQUEST
    return [
        json.dumps(
            {
                "inputs": [
                    {
                        "name": "input",
                        "shape": [ROWS_PER_REQUEST, rows.shape[1]],
                        "datatype": "FP32",
                        "data": batch.reshape(-1).tolist(),
                    }
                ]
            }
        ).encode()
        for batch in np.array_split(rows[:usable], usable // ROWS_PER_REQUEST)
    ]


class Load:
    """Requests to `address` (host:port) from `workers` threads until stopped."""

    def __init__(
        self, address: str, model: str = "cancer", workers: int = 1, pause: float = 0.02, first_answer: float = 30.0
    ) -> None:
        self.host, _, port = address.partition(":")
        self.port = int(port or 80)
        self.path = f"/v2/models/{model}/infer"
        self.bodies = breast_cancer_bodies()  # swap for other bodies at any time
        self.pause = pause
        self.first_answer = first_answer  # seconds to wait for the Service's first answer; 0: start at once
        self.answers: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self.latencies: list[tuple[float, float]] = []  # (monotonic end, seconds) of each request
        self.failures: list[Failure] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(workers)]

    def __enter__(self) -> Load:
        if self.first_answer:
            self._wait_until_answered(self.first_answer)
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _wait_until_answered(self, timeout: float) -> None:
        """Counting starts once the Service has answered once. A ModelDeployment is Ready when
        its pods are; kube-proxy writes the new Service's rules a moment later (CI once saw a
        refused connection 35 ms before that sync), and that moment is not a rollout's."""
        deadline = time.monotonic() + timeout
        while True:
            _, _, failure = self._send(self.bodies[0])
            if failure is None:
                return
            if time.monotonic() > deadline:
                where = f"{self.host}:{self.port}"
                raise AssertionError(f"the Service at {where} never answered in {timeout:g}s: {failure.describe()}")
            time.sleep(0.1)

    def _run(self, offset: int) -> None:
        index = offset * 37
        while not self._stop.is_set():
            body = self.bodies[index % len(self.bodies)]
            index += 1
            started = time.monotonic()
            answer, version, failure = self._send(body)
            ended = time.monotonic()
            with self._lock:
                self.answers[answer] += 1
                if version is not None:
                    self.versions[version] += 1
                if failure is not None:
                    self.failures.append(failure)
                self.latencies.append((ended, ended - started))
            time.sleep(self.pause)

    def _send(self, body: bytes) -> tuple[str, str | None, Failure | None]:
        """One request on a fresh connection: (status or error name, answering version, failure)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        phase, local_port = "connect", None
        try:
            sock = connection.sock = client_socket(timeout=10)
            local_port = sock.getsockname()[1]
            sock.connect((self.host, self.port))
            phase = "send"
            connection.request("POST", self.path, body=body, headers={"Content-Type": "application/json"})
            phase = "answer"
            response = connection.getresponse()
            content = response.read()
            if response.status == 200:
                return "200", str(json.loads(content)["model_version"]), None
            reason = f"HTTP {response.status}: {content[:200].decode(errors='replace')}"
            return str(response.status), None, self._failure(phase, reason, local_port)
        except (OSError, http.client.HTTPException) as error:
            return type(error).__name__, None, self._failure(phase, _reason(error), local_port)
        finally:
            connection.close()

    def _failure(self, phase: str, reason: str, local_port: int | None) -> Failure:
        return Failure(time.time(), phase, reason, local_port, _pod_address(local_port, self.port))

    def failures_seen(self) -> list[Failure]:
        with self._lock:
            return list(self.failures)

    def failed(self) -> int:
        with self._lock:
            return sum(count for answer, count in self.answers.items() if answer != "200")

    def answered_by(self, version: str) -> int:
        """Answers (200) that carried model_version `version`."""
        with self._lock:
            return self.versions[version]

    def served(self) -> int:
        with self._lock:
            return sum(self.answers.values())

    def p99(self, since: float = 0.0, until: float = float("inf")) -> float | None:
        """The p99 latency in seconds of the requests that ended in [since, until]."""
        with self._lock:
            taken = sorted(seconds for end, seconds in self.latencies if since <= end <= until)
        if not taken:
            return None
        return taken[min(len(taken) - 1, int(0.99 * len(taken)))]
