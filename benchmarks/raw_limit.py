"""The limit: InferenceSession.run in a loop on the request's own rows, no HTTP at all.

    python benchmarks/raw_limit.py --model M.onnx --body request.json [--seconds 2] [--repeats 3]

prints one JSON object: calls per second (median of the repeats) for the request as sent,
and for the same rows stacked to 32 rows (what one batch of 16 such requests costs).
The session is built with our server's own options (one thread, no spinning), so this is
the most our server could ever answer on one core.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from modeldeploy_serving.model import session_options


def feeds_of(body: dict[str, object]) -> dict[str, np.ndarray]:
    inputs = body["inputs"]
    assert isinstance(inputs, list)
    return {i["name"]: np.asarray(i["data"], dtype=np.float32).reshape(i["shape"]) for i in inputs}


def calls_per_second(session: ort.InferenceSession, feeds: dict[str, np.ndarray], seconds: float) -> float:
    calls, started = 0, time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(50):
            session.run(None, feeds)
        calls += 50
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - started)


def measure(model: Path, body: dict[str, object], seconds: float, repeats: int) -> dict[str, float]:
    session = ort.InferenceSession(str(model), session_options(1), providers=["CPUExecutionProvider"])
    feeds = feeds_of(body)
    rows = next(iter(feeds.values())).shape[0]
    stacked = {name: np.concatenate([array] * (32 // rows)) for name, array in feeds.items()}
    calls_per_second(session, feeds, 0.5)  # warm-up
    single = [calls_per_second(session, feeds, seconds) for _ in range(repeats)]
    batch = [calls_per_second(session, stacked, seconds) for _ in range(repeats)]
    return {
        "rows_per_request": rows,
        "calls_per_s": statistics.median(single),
        "us_per_call": 1e6 / statistics.median(single),
        "batch32_calls_per_s": statistics.median(batch),
        "batch32_us_per_call": 1e6 / statistics.median(batch),
        "batch32_requests_per_s": statistics.median(batch) * (32 // rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--body", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(measure(args.model, json.loads(args.body.read_text()), args.seconds, args.repeats)))


if __name__ == "__main__":
    main()
