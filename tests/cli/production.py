"""Production traffic for the dataset and retraining tests, written by the real serving code.

serve_and_label() runs a model as a stable pod would (in-process, with spec.capture's
writer and a real feedback store), sends rows as clients do, each request with its own id,
then sends labels back by (id, row): the capture sink ends up with exactly the objects a
cluster's pods would write. write_objects() writes chosen lines under capture-style object
names with chosen times, for what a live server cannot do on demand (rows of last week,
a broken line), with the server's own row and label formatting (sampling.py).
"""

from __future__ import annotations

import datetime
import gzip
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from modeldeploy_serving.app import AppOptions, ServingApp
from modeldeploy_serving.feedback import FeedbackOptions
from modeldeploy_serving.model import Model
from modeldeploy_serving.sampling import Answered, CaptureOptions, RowSource, capture_rows, label_row, object_key

from tests.serving.harness import InProcessServer, infer_body

ROWS_PER_REQUEST = 4


def capture_options(sink: str) -> CaptureOptions:
    """Every request captured, written in small objects, quickly."""
    return CaptureOptions(
        sink,
        sample_rate=1.0,
        max_rows_per_minute=1_000_000,
        batch_rows=100,
        flush_seconds=0.2,
        retry_delay_seconds=0.05,
        timeout_seconds=30.0,
        pod="breast-cancer-stable-7d9f",
        namespace="ml",
    )


def serve_and_label(model: Model, sink: str, store: str, rows: np.ndarray, truth: Sequence[Any]) -> list[str]:
    """Serve `rows` (FP32, requests of ROWS_PER_REQUEST) with capture to `sink`, label row i
    with truth[i] (None: no label), and shut the server down, which writes what is queued.
    Returns the request ids, in order."""
    feedback = FeedbackOptions(store=store, prefix=f"test-{uuid.uuid4().hex[:12]}")
    server = InProcessServer(
        ServingApp(model, AppOptions(track="stable", capture=capture_options(sink), feedback=feedback))
    )
    ids = []
    try:
        for start in range(0, len(rows), ROWS_PER_REQUEST):
            request_id = f"order-{start // ROWS_PER_REQUEST:05d}"
            answer = server.infer(infer_body(rows[start : start + ROWS_PER_REQUEST].astype(np.float32), id=request_id))
            assert answer.status_code == 200, answer.text
            ids.append(request_id)
        items = [
            {"id": ids[i // ROWS_PER_REQUEST], "row": i % ROWS_PER_REQUEST, "truth": label}
            for i, label in enumerate(truth)
            if label is not None
        ]
        for start in range(0, len(items), 5000):
            answer = server.post(f"/v2/models/{model.name}/feedback", json={"feedback": items[start : start + 5000]})
            assert answer.status_code == 200, answer.text
    finally:
        server.close()
    return ids


SOURCE = RowSource("breast-cancer", "1", "stable")


def at(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def sample_lines(
    request_id: str, when: str, inputs: np.ndarray, names: list[str], outputs: dict[str, np.ndarray]
) -> list[bytes]:
    """A captured request's lines, as the server writes them (one input tensor named input)."""
    answered = Answered(request_id, at(when), {"input": inputs.astype(np.float32)}, outputs, len(inputs))
    feature_names = {("input", column): name for column, name in enumerate(names)}
    return [
        orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) for row in capture_rows(SOURCE, answered, feature_names)
    ]


def label_line(request_id: str, row: int, when: str, truth: Any, matched: bool = True) -> bytes:
    return orjson.dumps(label_row(SOURCE, at(when), request_id, row, truth, matched))


def write_objects(
    folder: Path, prefix: str, objects: list[tuple[str, list[bytes]]], compress: bool = False
) -> list[Path]:
    """Objects named as the s3 sink names them (PREFIX/MODEL/VERSION/YYYY/MM/DD/TIME-POD-SEQ.jsonl),
    each (when it was written, its lines), under folder."""
    paths = []
    for sequence, (written, lines) in enumerate(objects, 1):
        key = object_key(prefix, SOURCE, at(written), "breast-cancer-stable-7d9f", sequence)
        path = folder / (key + (".gz" if compress else ""))
        path.parent.mkdir(parents=True, exist_ok=True)
        body = b"\n".join(lines) + b"\n"
        path.write_bytes(gzip.compress(body, mtime=0) if compress else body)
        paths.append(path)
    return paths
