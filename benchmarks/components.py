"""Where one request's time goes in our server, step by step, without HTTP.

    .venv/bin/python benchmarks/components.py [--models DIR] [--version 2]

Calls the server's own functions in a loop on the benchmark payload and prints microseconds
per call (best of 5 runs of ~0.3 s, so a busy machine inflates them less than a median
would): JSON decoding, validation, the ONNX Runtime call, the telemetry of one batch (1
request and 16 requests merged), the response, and a request through the batcher alone.
Pinned to core 0 like the servers. Trains the examples into a scratch folder unless
--models names a folder that has them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
from modeldeploy_serving.app import ServingApp
from modeldeploy_serving.model import load_model
from modeldeploy_serving.protocol import parse_request


def per_call_us(function: Callable[[], object], seconds: float = 0.3) -> float:
    best = float("inf")
    for _ in range(5):
        calls, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            for _ in range(20):
                function()
            calls += 20
        best = min(best, elapsed / calls * 1e6)
    return best


def batcher_us(app: ServingApp, inputs: dict[str, np.ndarray], rows: int, concurrent: int) -> float:
    """Microseconds per request through Batcher.submit, `concurrent` requests at a time."""

    async def run() -> float:
        app.batcher.start()
        best = float("inf")
        for _ in range(5):
            count, started = 0, time.perf_counter()
            while time.perf_counter() - started < 0.3:
                await asyncio.gather(*(app.batcher.submit(inputs, rows) for _ in range(concurrent)))
                count += concurrent
            best = min(best, (time.perf_counter() - started) / count * 1e6)
        await app.batcher.stop()
        return best

    return asyncio.run(run())


def measure(models: Path, version: str) -> dict[str, float]:
    body_bytes = (models / "breast-cancer-request.json").read_bytes()
    model = load_model(models / f"breast-cancer-v{version}.onnx", "breast-cancer", version)
    app = ServingApp(model)
    document = orjson.loads(body_bytes)
    request = parse_request(document, model.inputs, model.outputs)
    names = [spec.name for spec in model.outputs]
    outputs = dict(zip(names, model.run(names, request.inputs), strict=True))
    merged = {n: np.concatenate([a] * 16) for n, a in request.inputs.items()}
    merged_outputs = dict(zip(names, model.run(names, merged), strict=True))
    many = {n: np.concatenate([a] * 128) for n, a in request.inputs.items()}
    many_outputs = dict(zip(names, model.run(names, many), strict=True))
    metrics = app.metrics

    def response() -> bytes:
        document = {
            "model_name": model.name,
            "model_version": model.version,
            "outputs": [
                {"name": n, "datatype": "FP32", "shape": list(outputs[n].shape), "data": outputs[n].reshape(-1)}
                for n in names
            ],
        }
        return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)

    def request_counters() -> None:
        metrics.request_answered("ok", 0.001)

    results = {
        "json_decode": per_call_us(lambda: orjson.loads(body_bytes)),
        "validate (parse_request)": per_call_us(lambda: parse_request(document, model.inputs, model.outputs)),
        "onnx_run_1_request": per_call_us(lambda: model.run(names, request.inputs)),
        "onnx_run_16_requests_merged": per_call_us(lambda: model.run(names, merged)),
        "telemetry_batch_1_request (observe_batch)": per_call_us(
            lambda: metrics.observe_batch(request.inputs, outputs, 0.001)
        ),
        "telemetry_batch_16_requests (observe_batch)": per_call_us(
            lambda: metrics.observe_batch(merged, merged_outputs, 0.001)
        ),
        "telemetry_batch_128_requests (observe_batch)": per_call_us(
            lambda: metrics.observe_batch(many, many_outputs, 0.001)
        ),
        "  of which feature histograms, 1 request": per_call_us(
            lambda: [g.observe(request.inputs[n]) for n, g in metrics.data.features.items()]
        ),
        "  of which prediction histograms, 1 request": per_call_us(
            lambda: [b.observe(outputs[n]) for n, b in metrics.data.predictions.items()]
        ),
        "  of which class counts, 1 request": per_call_us(
            lambda: [c.observe(outputs[n]) for n, c in metrics.data.classes.items()]
        ),
        "  of which batch counts (inference time, batch size; counted when read)": per_call_us(
            lambda: (metrics.inference_duration.observe(0.001), metrics.batch_size.observe(2))
        ),
        "telemetry_per_request (outcome + duration, counted when read)": per_call_us(request_counters),
        "response (build + orjson.dumps)": per_call_us(response),
        "batcher, 1 request at a time (incl. onnx + telemetry)": batcher_us(app, request.inputs, request.rows, 1),
    }
    app = ServingApp(model)  # a fresh batcher: its moving average of call time starts anew
    results["batcher, 16 at a time, per request (incl. onnx + telemetry)"] = batcher_us(
        app, request.inputs, request.rows, 16
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, help="a folder examples/train.py wrote (default: train anew)")
    parser.add_argument("--version", default="2", help="breast-cancer version (default 2, the random forest)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    with tempfile.TemporaryDirectory(prefix="modeldeploy-components-") as scratch:
        models = args.models
        if models is None:
            import training

            models = Path(scratch)
            training.train(models)
        results = measure(models, args.version)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name, us in results.items():
        print(f"{us:9.1f} us  {name}")


if __name__ == "__main__":
    main()
