"""Real requests to serving pods, and what a window over them must count, recomputed with numpy.

Tests of the telemetry seam send rows from the breast-cancer reference CSV, remember what
they sent and what the model answered (Sent), and assert a window's counts equal exactly
what was sent: every outcome, row, feature bin, missing value, score bin and class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from modeldeploy_operator.telemetry.windows import Bins, TrackWindow
from modeldeploy_serving.profile import Profile

from tests.serving.harness import infer_body, output


@dataclass
class Sent:
    """The requests one track answered in a window, and its answers."""

    ok: int = 0
    invalid: int = 0
    rows: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    probabilities: list[np.ndarray] = field(default_factory=list)

    def record(self, rows: np.ndarray, response: httpx.Response) -> None:
        if response.status_code != 200:
            assert 400 <= response.status_code < 500, response.text
            self.invalid += 1
            return
        self.ok += 1
        self.rows.append(rows)
        self.labels.append(output(response, "label").reshape(-1))
        # FP32 on the wire: back to the float32 the server binned.
        self.probabilities.append(output(response, "probabilities").astype(np.float32).astype(np.float64))


def body(rows: np.ndarray, name: str = "input") -> dict[str, Any]:
    """An inference request for rows, NaN sent as null (a missing value)."""
    document = infer_body(rows, name=name)
    document["inputs"][0]["data"] = [None if value != value else value for value in document["inputs"][0]["data"]]
    return document


def send(client: Any, model: str, rows: np.ndarray, batch: int, sent: Sent) -> None:
    """rows in requests of `batch` rows each, recorded in sent; client: httpx.Client or InProcessServer."""
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        sent.record(chunk, client.post(f"/v2/models/{model}/infer", json=body(chunk)))


def send_invalid(client: Any, model: str, sent: Sent) -> None:
    """A request the server refuses before inference (a wrong input name): outcome invalid."""
    rows = np.zeros((1, 30), dtype=np.float32)
    sent.record(rows, client.post(f"/v2/models/{model}/infer", json=infer_body(rows, name="not-an-input")))


def binned(values: np.ndarray, edges: list[float]) -> tuple[int, ...]:
    """Right-closed bins on the profile's edges, finite values only, as the server counts them."""
    finite = values[np.isfinite(values)]
    bins = np.searchsorted(np.asarray(edges), finite, side="left")
    return tuple(np.bincount(bins, minlength=len(edges) + 1).tolist())


def assert_counts(window: TrackWindow, sent: Sent, profile: Profile) -> None:
    """The window counted exactly what was sent to its track."""
    rows = np.concatenate(sent.rows).astype(np.float64) if sent.rows else np.zeros((0, len(profile.features)))
    assert dict(window.requests) == {"ok": sent.ok, "invalid": sent.invalid, "error": 0}
    assert window.total_requests == window.latency.total == sent.ok + sent.invalid
    assert window.rows == len(rows)
    for feature in profile.features:
        column = rows[:, feature.column]
        assert window.features[feature.name] == Bins(tuple(feature.edges), binned(column, feature.edges)), feature
        assert window.missing[feature.name] == int(np.isnan(column).sum()), feature.name
        assert window.invalid[feature.name] == int(np.isinf(column).sum()), feature.name
    labels = np.concatenate(sent.labels) if sent.labels else np.zeros(0, dtype=np.int64)
    probabilities = np.concatenate(sent.probabilities) if sent.probabilities else np.zeros((0, 2))
    for entry in profile.outputs:
        if entry.kind == "classes":
            expected = {label: int(np.count_nonzero(labels.astype(str) == label)) for label in entry.classes}
            assert dict(window.classes[entry.name]) == expected
        else:
            scores = probabilities[:, entry.column or 0]
            assert window.predictions[(entry.name, entry.label)] == Bins(
                tuple(entry.edges), binned(scores, entry.edges)
            )
