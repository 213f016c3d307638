"""A load generator of real rows for a model's Service: the rollout tests, benchmark and demo share it.

Each request carries a few rows of scikit-learn's breast-cancer data set, cycled in order,
on a fresh connection (so kube-proxy balances every request, not every connection, and
each track's pods see the same mix of rows). Every answer is counted by status, every 200
by the version that answered it, and every request's latency is kept, so a caller can say
how many requests failed during a promotion and what its p99 was.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import numpy as np
from sklearn.datasets import load_breast_cancer

ROWS_PER_REQUEST = 4


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

    def __init__(self, address: str, model: str = "cancer", workers: int = 1, pause: float = 0.02) -> None:
        self.url = f"http://{address}/v2/models/{model}/infer"
        self.bodies = breast_cancer_bodies()  # swap for other bodies at any time
        self.pause = pause
        self.answers: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self.latencies: list[tuple[float, float]] = []  # (monotonic end, seconds) of each request
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(workers)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, offset: int) -> None:
        index = offset * 37
        while not self._stop.is_set():
            body = self.bodies[index % len(self.bodies)]
            index += 1
            request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
            started = time.monotonic()
            answer, version = self._send(request)
            ended = time.monotonic()
            with self._lock:
                self.answers[answer] += 1
                if version is not None:
                    self.versions[version] += 1
                self.latencies.append((ended, ended - started))
            time.sleep(self.pause)

    @staticmethod
    def _send(request: urllib.request.Request) -> tuple[str, str | None]:
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return str(response.status), str(json.loads(response.read())["model_version"])
        except urllib.error.HTTPError as error:
            return str(error.code), None
        except OSError as error:
            return type(error).__name__, None

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
