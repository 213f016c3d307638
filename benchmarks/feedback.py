"""Feedback's cost and speed (issue 20): serving with predictions recorded against without, and
labels one pod joins per second, side by side in one run.

    .venv/bin/python benchmarks/feedback.py            # about 4 minutes on a quiet 2-core machine
    .venv/bin/python benchmarks/feedback.py --quick    # tiny numbers: checks the harness

1. Serving: our server on the random forest (breast-cancer v2) with the example's sample
   request (2 rows), at concurrency 16 (wrk), alternately without feedback and with
   `--feedback-store` (every answer's predictions written to a real redis-server), each
   repeat a fresh pair of runs; the median rps and p99 of each, their ratio (target:
   within 10%), the server's CPU per request, and how many predictions reached the store
   or were dropped.
2. Ingest: the same server with feedback answers 1-row requests with ids of ours; then
   labels for them are sent in calls of 10,000 (one client, one call at a time), first
   for the first time (all matched), then again (all duplicates). Labels per second of
   wall time and per CPU-second of the serving process (target: at least 20,000 a core).

The server runs on core 0; wrk, the clients and redis-server on core 1 (redis-server's own
CPU is reported apart). Writes results/feedback-<date>.json and .md and prints the table.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import environments
import load
import numpy as np
import orjson
import process_stats
import redis
import servers
import training

HERE = Path(__file__).resolve().parent
NAME = "breast-cancer"
VERSION = "2"
CLIENT_CORE = 1
CALL_LABELS = 10_000


def start_redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH: apt-get install -y redis-server")
    command = ["taskset", "-c", str(CLIENT_CORE), binary, "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--save", "", "--appendonly", "no", "--dir", str(folder)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.ping()
            return process
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit("redis-server did not start") from None
            time.sleep(0.05)


def metric(port: int, name: str) -> float:
    """The sum of a metric's samples on the server's /metrics page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.split("{", 1)[0] == name)


def serving(models: Path, body: Path, store: str, args: argparse.Namespace) -> dict[str, Any]:
    """Alternate runs without and with feedback; each repeat a fresh server of each kind."""
    model = models / f"{NAME}-v{VERSION}.onnx"
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    written = dropped = 0.0
    for repeat in range(args.repeats):
        for kind in ("off", "on"):
            flags = ["--feedback-store", store, "--feedback-prefix", f"bench-{repeat}"] if kind == "on" else []
            server = servers.ours(f"ours-feedback-{kind}", f"feedback {kind}", model, NAME, args.port, *flags)
            server.start(args.logs, 0)
            try:
                server.wait_ready(body.read_bytes())
                load.wrk(server.url, body, 16, args.warmup)
                cpu = server.cpu_seconds()
                result = load.wrk(server.url, body, 16, args.seconds)
                result["cpu_us_per_request"] = (server.cpu_seconds() - cpu) / result["requests"] * 1e6
                result["loadavg_1min"] = os.getloadavg()[0]
                result.pop("wrk")
                if kind == "on":
                    time.sleep(0.5)  # the writer's last batch
                    written += metric(args.port, "modeldeploy_feedback_predictions_total")
                    dropped += metric(args.port, "modeldeploy_feedback_predictions_dropped_total")
            finally:
                server.stop()
            runs[kind].append(result)
            print(
                f"  serving, feedback {kind}, repeat {repeat + 1}: {result['rps']:.0f} rps, "
                f"p99 {result['p99_ms']:.2f} ms, {result['cpu_us_per_request']:.0f} us CPU a request",
                flush=True,
            )
    median = {
        kind: {k: statistics.median(r[k] for r in rs) for k in ("rps", "p99_ms", "cpu_us_per_request")}
        for kind, rs in runs.items()
    }
    return {
        "runs": runs,
        "median": median,
        "rps_ratio": median["on"]["rps"] / median["off"]["rps"],
        "p99_ratio": median["on"]["p99_ms"] / median["off"]["p99_ms"],
        "predictions_written": written,
        "predictions_dropped": dropped,
    }


def predictions(port: int, rows: np.ndarray, count: int) -> None:
    """`count` 1-row requests with ids bench-0 ... from 16 threads (the predictions labels join)."""
    url = f"http://127.0.0.1:{port}/v2/models/{NAME}/infer"

    def send(index: int) -> None:
        row = rows[index % len(rows)]
        body = {
            "id": f"bench-{index}",
            "inputs": [{"name": "input", "shape": [1, row.size], "datatype": "FP32", "data": row.tolist()}],
        }
        request = urllib.request.Request(url, data=orjson.dumps(body), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(send, range(count)))


def ingest(models: Path, body: Path, store: str, args: argparse.Namespace) -> dict[str, Any]:
    model = models / f"{NAME}-v{VERSION}.onnx"
    flags = ["--feedback-store", store, "--feedback-prefix", "bench-ingest"]
    server = servers.ours("ours-feedback-ingest", "feedback ingest", model, NAME, args.port, *flags)
    rows = np.loadtxt(models / f"{NAME}-holdout.csv", delimiter=",", skiprows=1, dtype=np.float32)[:, :-1]
    server.start(args.logs, 0)
    passes: dict[str, Any] = {}
    try:
        server.wait_ready(body.read_bytes())
        started = time.monotonic()
        predictions(args.port, rows, args.labels)
        print(f"  {args.labels} predictions with ids in {time.monotonic() - started:.1f} s", flush=True)
        time.sleep(0.5)
        written = metric(args.port, "modeldeploy_feedback_predictions_total")
        if written < args.labels:
            raise SystemExit(f"only {written:.0f} of {args.labels} predictions reached the store")
        bodies = [
            orjson.dumps(
                {
                    "feedback": [
                        {"id": f"bench-{i}", "truth": i % 2} for i in range(s, min(s + CALL_LABELS, args.labels))
                    ]
                }
            )
            for s in range(0, args.labels, CALL_LABELS)
        ]
        url = f"http://127.0.0.1:{args.port}/v2/models/{NAME}/feedback"
        for name in ("first", "again"):
            totals = {"matched": 0, "unmatched": 0, "duplicates": 0}
            cpu = server.cpu_seconds()
            started = time.monotonic()
            for data in bodies:
                request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=120) as answer:
                    for key, count in orjson.loads(answer.read()).items():
                        if key in totals:
                            totals[key] += count
            seconds = time.monotonic() - started
            cpu_seconds = server.cpu_seconds() - cpu
            passes[name] = {
                "labels": args.labels,
                "seconds": seconds,
                "labels_per_second": args.labels / seconds,
                "server_cpu_seconds": cpu_seconds,
                "labels_per_cpu_second": args.labels / cpu_seconds if cpu_seconds else float("inf"),
                **totals,
            }
            print(
                f"  ingest, {name}: {args.labels / seconds:,.0f} labels/s, "
                f"{passes[name]['labels_per_cpu_second']:,.0f} per CPU-second of the server, {totals}",
                flush=True,
            )
    finally:
        server.stop()
    return passes


def markdown(results: dict[str, Any]) -> str:
    s = results["serving"]
    off, on = s["median"]["off"], s["median"]["on"]
    lines = [
        f"# Feedback benchmark, {results['started']}",
        "",
        f"`{results['command']}`; load average at start {results['loadavg_at_start'][0]:.2f}, "
        f"during the runs {min(r['loadavg_1min'] for rs in s['runs'].values() for r in rs):.2f} to "
        f"{max(r['loadavg_1min'] for rs in s['runs'].values() for r in rs):.2f}; {results['cpus']} CPUs.",
        "",
        f"Serving (breast-cancer v{VERSION}, 2-row request, c16, median of {len(s['runs']['off'])} repeats of "
        f"{results['settings']['seconds']:g} s):",
        "",
        "| feedback | rps | p99 ms | CPU us a request |",
        "|---|---|---|---|",
        f"| off | {off['rps']:,.0f} | {off['p99_ms']:.2f} | {off['cpu_us_per_request']:.0f} |",
        f"| on (`--feedback-store`) | {on['rps']:,.0f} | {on['p99_ms']:.2f} | {on['cpu_us_per_request']:.0f} |",
        f"| on / off | {s['rps_ratio']:.3f} | {s['p99_ratio']:.3f} | "
        f"{on['cpu_us_per_request'] / off['cpu_us_per_request']:.3f} |",
        "",
        f"Predictions written to the store during the 'on' runs: {s['predictions_written']:,.0f}; "
        f"dropped: {s['predictions_dropped']:,.0f}.",
        "",
        f"Ingest ({results['settings']['labels']:,} labels of 1-row answers, calls of {CALL_LABELS:,}, one at a time):",
        "",
        "| pass | labels/s | labels per CPU-second of the server | matched | duplicates | unmatched |",
        "|---|---|---|---|---|---|",
    ]
    for name, p in results["ingest"].items():
        lines.append(
            f"| {name} | {p['labels_per_second']:,.0f} | {p['labels_per_cpu_second']:,.0f} | "
            f"{p['matched']:,} | {p['duplicates']:,} | {p['unmatched']:,} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of one wrk run (default 10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="wrk warm-up before each run (default 3)")
    parser.add_argument("--repeats", type=int, default=5, help="pairs of runs, off then on (default 5)")
    parser.add_argument("--labels", type=int, default=50_000, help="predictions made, then labelled (default 50000)")
    parser.add_argument("--port", type=int, default=18700)
    parser.add_argument("--quick", action="store_true", help="tiny numbers: 1 repeat of 1 s, 2,000 labels")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.repeats, args.labels = 1.0, 1.0, 1, 2_000
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = " ".join([".venv/bin/python", "benchmarks/feedback.py", *(sys.argv[1:] if argv is None else argv)])
    environments.ensure_wrk()
    os.sched_setaffinity(0, {CLIENT_CORE})  # the clients beside wrk, away from the server's core
    started = datetime.datetime.now(datetime.UTC)
    load_at_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="modeldeploy-bench-feedback-") as scratch:
        work = Path(scratch)
        args.logs = work / "logs"
        args.logs.mkdir()
        models = work / "models"
        print(f"training the examples into {models}", flush=True)
        training.examples.train(models)
        body = models / f"{NAME}-request.json"
        redis_port = args.port + 1
        store_process = start_redis(redis_port, work)
        store = f"redis://127.0.0.1:{redis_port}/0"
        try:
            serving_results = serving(models, body, store, args)
            ingest_results = ingest(models, body, store, args)
            store_cpu = process_stats.cpu_seconds(store_process.pid)
        finally:
            store_process.terminate()
            store_process.wait(30)
    results = {
        "command": command,
        "started": started.isoformat(timespec="seconds"),
        "loadavg_at_start": load_at_start,
        "cpus": os.cpu_count(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("logs", "out")},
        "serving": serving_results,
        "ingest": ingest_results,
        "redis_cpu_seconds": store_cpu,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"feedback-{started:%Y-%m-%d-%H%M}{'-quick' if args.quick else ''}"
    stem.with_name(f"{stem.name}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    text = markdown(results)
    stem.with_name(f"{stem.name}.md").write_text(text)
    print(text)
    print(f"wrote {stem}.json and {stem}.md")


if __name__ == "__main__":
    main()
