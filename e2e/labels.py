"""Predictions with ids of ours and the true labels sent back for them, through a model's
Service, as a user of spec.feedback sends them (docs/feedback.md).

The rows are breast-cancer's held-out rows with their true classes, as examples/train.py
wrote them beside the image's example models. `Labels` sends a batch and says what the
feedback calls came to; `Labeller` keeps doing it in a thread beside a load, for the demo.
"""

from __future__ import annotations

import csv
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

from e2e.cluster import images


def holdout(folder: Path | None = None) -> tuple[np.ndarray, list[int]]:
    """The held-out rows and their true classes."""
    path = (folder or images.example_models_folder()) / "breast-cancer-holdout.csv"
    with path.open() as file:
        header = next(csv.reader(file))
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
    target = header.index("target")
    return np.delete(table, target, axis=1), [int(value) for value in table[:, target]]


def row(key: str) -> int:
    """The held-out row an id of ours was sent for: TAG-ROW."""
    return int(key.rsplit("-", 1)[1])


class Labels:
    """Predictions and labels for one model, at http://ADDRESS (a Service's ClusterIP)."""

    def __init__(self, address: str, model: str) -> None:
        # A fresh connection for every request, so kube-proxy spreads them over the pods as it
        # spreads users' (one kept-alive connection would reach one pod only).
        limits = httpx.Limits(max_keepalive_connections=0)
        self.http = httpx.Client(base_url=f"http://{address}", timeout=30, limits=limits)
        self.model = model

    def ready(self) -> bool:
        try:
            return self.http.get(f"/v2/models/{self.model}/ready").status_code == 200
        except httpx.TransportError:
            return False

    def predict(self, rows: np.ndarray, tag: str) -> dict[str, tuple[int, str]]:
        """id -> (predicted class, version that answered), one row a request, ids TAG-ROW."""
        answers = {}
        for index, values in enumerate(rows):
            body = {
                "id": f"{tag}-{index}",
                "inputs": [{"name": "input", "shape": [1, len(values)], "datatype": "FP32", "data": values.tolist()}],
            }
            response = self.http.post(f"/v2/models/{self.model}/infer", json=body)
            if response.status_code != 200:
                raise AssertionError(f"{response.status_code} for id {tag}-{index}: {response.text}")
            answer = response.json()
            label = next(o for o in answer["outputs"] if o["name"] == "label")
            answers[answer["id"]] = (int(label["data"][0]), answer["model_version"])
        return answers

    def label(self, truth: dict[str, int], per_call: int = 50) -> dict[str, int]:
        """Send every label, `per_call` a call; what the calls came to, summed."""
        totals = {"accepted": 0, "matched": 0, "unmatched": 0, "duplicates": 0}
        items = [{"id": key, "truth": value} for key, value in truth.items()]
        time.sleep(0.5)  # a prediction reaches the store within milliseconds of its answer
        for start in range(0, len(items), per_call):
            call = {"feedback": items[start : start + per_call]}
            response = self.http.post(f"/v2/models/{self.model}/feedback", json=call)
            if response.status_code != 200:
                raise AssertionError(f"feedback call answered {response.status_code}: {response.text}")
            for key, value in response.json().items():
                totals[key] += value
        return totals

    def close(self) -> None:
        self.http.close()


class Labeller:
    """Held-out rows predicted and labelled over and over in a thread, `rate` rows a second,
    labels sent `batch` at a time: live accuracy for a demo. `concept` maps each true class to
    the label sent (a changed concept, e.g. `lambda y: 1 - y`). Counts what it sent and what joined."""

    def __init__(
        self, address: str, model: str, rate: float = 5.0, batch: int = 25, concept: Callable[[int], int] | None = None
    ) -> None:
        self.labels = Labels(address, model)
        self.rows, truth = holdout()
        self.truth = [concept(value) for value in truth] if concept is not None else truth  # a changed concept
        self.rate, self.batch = rate, batch
        # Ids unique to this labeller: a store that outlives a run (the demo's, run again)
        # keeps the ids it labelled, and would count the same ids again as duplicates.
        self.tag = uuid.uuid4().hex[:8]
        self.sent = self.matched = self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="labeller", daemon=True)

    def __enter__(self) -> Labeller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.labels.close()

    def _run(self) -> None:
        rounds = 0
        while not self._stop.is_set():
            for start in range(0, len(self.rows), self.batch):
                if self._stop.is_set():
                    return
                chunk = self.rows[start : start + self.batch]
                try:
                    answers = self.labels.predict(chunk, f"{self.tag}r{rounds}s{start}")
                    truth = {key: self.truth[start + row(key)] for key in answers}
                    self.matched += self.labels.label(truth)["matched"]
                    self.sent += len(truth)
                except (AssertionError, httpx.HTTPError):
                    self.failed += 1  # a rollout's moment; the load counts requests, this counts labels
                self._stop.wait(len(chunk) / self.rate)
            rounds += 1
