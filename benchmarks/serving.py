"""Our server against the limit, the floor and the peers: one run, one machine, one payload.

    .venv/bin/python benchmarks/serving.py            # the full run, about 45 minutes
    .venv/bin/python benchmarks/serving.py --quick    # one short repeat, to check the harness

Trains the example models into a scratch folder, then for each breast-cancer model (v1
logistic regression, v2 random forest) measures, with the example's sample request:
the limit (InferenceSession.run in a loop); the floors (floors.py: a plain ASGI app on our
uvicorn stack answering a fixed body, a grpc.aio server and a 4-thread sync grpc server
answering a fixed message); the bare endpoint (bare_endpoint.py); our server over REST with
telemetry on, off, and with batching off; our server over gRPC with typed contents and with
raw_input_contents; the KServe Python model server with a minimal ONNX Runtime model
(kserve_onnx_runtime.py); MLServer 1.7.1 with its scikit-learn runtime on the same fitted
estimator, and MLServer with a minimal ONNX Runtime runtime. Servers run on core 0, the load
(wrk for REST, h2load for gRPC) on core 1; each point is the median of the repeats. Writes
results/serving-<date>.json.gz (raw) and results/serving-<date>.md (summary), and prints the table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import environments
import load
import numpy as np
import protocols
import report
import servers
import training
from raw_results import write_raw

HERE = Path(__file__).resolve().parent
NAME = "breast-cancer"
ALL_SERVERS = report.ORDER  # every server, in the order the tables list them


def grpc_bodies(body: Path, folder: Path) -> dict[str, Path]:
    """The payload's rows as framed ModelInferRequests, typed and raw (what h2load posts)."""
    tensor = json.loads(body.read_text())["inputs"][0]
    rows = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    folder.mkdir(exist_ok=True)
    return {k: v for k, v in protocols.bodies(rows, folder).items() if k.startswith("grpc")}


def build_servers(
    keys: list[str], models: Path, version: str, body: Path, args: argparse.Namespace
) -> list[servers.Server]:
    onnx = models / f"{NAME}-v{version}.onnx"
    framed = grpc_bodies(body, args.work / "grpc-bodies")
    built: list[servers.Server] = []
    for index, key in enumerate(keys):
        p = args.port + 10 * index
        if key == "http-floor":
            built.append(servers.http_floor(onnx, body, NAME, p))
        elif key in ("grpc-floor-aio", "grpc-floor-sync4"):
            kind = "grpc-aio" if key == "grpc-floor-aio" else "grpc-sync"
            built.append(servers.grpc_floor(kind, onnx, NAME, body, p, framed["grpc-typed"]))
        elif key in ("ours-grpc-typed", "ours-grpc-raw"):
            form = key.removeprefix("ours-")
            label = f"ours, gRPC {'typed contents' if form == 'grpc-typed' else 'raw_input_contents'}"
            built.append(servers.ours_grpc(key, label, onnx, NAME, p, framed[form]))
        elif key == "kserve-onnx":
            built.append(servers.kserve(environments.kserve_venv(), onnx, NAME, p))
        elif key == "bare":
            built.append(servers.bare(onnx, NAME, p, environments.starlette_path()))
        elif key == "ours":
            built.append(servers.ours(key, "ours", onnx, NAME, p))
        elif key == "ours-no-telemetry":
            built.append(servers.ours(key, "ours, --no-telemetry", onnx, NAME, p, "--no-telemetry"))
        elif key == "ours-no-batching":
            built.append(servers.ours(key, "ours, --max-batch-size 1", onnx, NAME, p, "--max-batch-size", "1"))
        elif key == "whatif-inline":
            built.append(servers.whatif(key, "what if: calls inline", "inline", onnx, NAME, p))
        elif key in ("mlserver-onnx", "mlserver-sklearn"):
            folder = args.work / f"{key}-v{version}"
            if key == "mlserver-onnx":
                model_file, settings = "model.onnx", {"implementation": "mlserver_onnx_runtime.OnnxRuntime"}
                label = "MLServer + ONNX Runtime runtime"
            else:
                model_file, settings = "model.joblib", {"implementation": "mlserver_sklearn.SKLearnModel"}
                label = "MLServer + scikit-learn runtime"
            source = onnx if key == "mlserver-onnx" else models / f"{NAME}-v{version}.joblib"
            server = servers.mlserver(
                key,
                label,
                environments.mlserver_venv(),
                folder,
                NAME,
                p,
                args.mlserver_workers,
                {**settings, "parameters": {"uri": f"./{model_file}", "version": version}},
            )
            (folder / NAME / model_file).write_bytes(source.read_bytes())
            built.append(server)
        else:
            raise SystemExit(f"--servers: unknown server {key!r}; expected some of {', '.join(ALL_SERVERS)}")
    return built


def raw_limit(models: Path, version: str, body: Path, args: argparse.Namespace) -> dict[str, float]:
    command = ["taskset", "-c", servers.SERVER_CORE, sys.executable, str(HERE / "raw_limit.py")]
    command += ["--model", str(models / f"{NAME}-v{version}.onnx"), "--body", str(body)]
    command += ["--seconds", str(min(args.seconds, 3.0)), "--repeats", str(args.repeats)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def measure_model(version: str, models: Path, body: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Start every server for one model, warm each, then repeat rounds over servers and concurrencies.

    Rounds interleave the servers, so a slow minute on the machine is spread over all of them
    rather than landing on one.
    """
    running = build_servers(args.servers, models, version, body, args)
    runs: list[dict[str, Any]] = []
    try:
        for server in running:
            server.start(args.logs, args.nice)
        for server in running:
            answer = server.wait_ready((server.body or body).read_bytes())
            print(f"  v{version} {server.label}: ready, answers {answer[:120]!r}", flush=True)
        for server in running:
            run_load(server, body, 16, args.warmup, args.nice)
        for repeat in range(args.repeats):
            for server in running:
                for connections in args.concurrency:
                    before, cpu = server.batch_counters(), server.cpu_seconds()
                    result = run_load(server, body, connections, args.seconds, args.nice)
                    result["cpu_us_per_request"] = 1e6 * (server.cpu_seconds() - cpu) / max(1, result["requests"])
                    result["batches"] = batches(before, server.batch_counters(), result["requests"])
                    result["loadavg_1min"] = os.getloadavg()[0]
                    runs.append(
                        {
                            "model": f"v{version}",
                            "server": server.key,
                            "label": server.label,
                            "concurrency": connections,
                            "repeat": repeat,
                            **result,
                        }
                    )
                    print(
                        f"  v{version} {server.label:34} c{connections:<3} #{repeat}: {result['rps']:8.0f} req/s"
                        f"  cpu {result['cpu_us_per_request']:5.0f} us/req"
                        f"  p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms"
                        + (f"  ERRORS {result['errors']}" if result["errors"] else "")
                        + (
                            f"  {result['batches']['requests_per_batch']:.1f} req/batch,"
                            f" {result['batches']['us_per_call']:.0f} us/call"
                            if result["batches"]
                            else ""
                        ),
                        flush=True,
                    )
                    time.sleep(0.3)
    finally:
        for server in running:
            server.stop()
    return runs


def run_load(server: servers.Server, body: Path, connections: int, seconds: float, nice: int) -> dict[str, Any]:
    """wrk with the JSON payload for a REST server; h2load with the server's own framed
    request for a gRPC one."""
    if server.grpc_port is None:
        return load.wrk(server.url, body, connections, seconds, nice)
    assert server.body is not None
    return load.h2load_grpc(server.grpc_port, server.body, connections, seconds, server.answer_bytes, nice)


def batches(before: dict[str, float] | None, after: dict[str, float] | None, requests: int) -> dict[str, float] | None:
    """What our server's batcher did during one run: requests per batch and time per ONNX Runtime call."""
    if not before or not after or after["batch_size_count"] == before["batch_size_count"]:
        return None
    count = after["batch_size_count"] - before["batch_size_count"]
    return {
        "requests_per_batch": requests / count,
        "us_per_call": 1e6
        * (after["inference_duration_seconds_sum"] - before["inference_duration_seconds_sum"])
        / count,
    }


def machine() -> dict[str, Any]:
    def sh(command: str) -> str:
        return subprocess.run(command, shell=True, capture_output=True, text=True, check=False).stdout.strip()

    return {
        "cpu": sh("lscpu | sed -n 's/^Model name: *//p'"),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "uptime_at_end": sh("uptime"),
        "other_busy_processes": sh("ps -eo pcpu,comm --sort=-pcpu --no-headers | head -5"),
        "commit": sh(f"git -C {HERE.parent} rev-parse --short HEAD"),
        "uncommitted_serving_changes": sh(f"git -C {HERE.parent} status --porcelain serving/"),
        "versions": environments.project_versions(),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one wrk run (default 5)")
    parser.add_argument("--warmup", type=float, default=3.0, help="wrk warm-up per server at c16 (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of every point; medians reported")
    parser.add_argument("--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[1, 16, 64])
    parser.add_argument("--versions", type=lambda s: s.split(","), default=["1", "2"], help="breast-cancer versions")
    parser.add_argument("--servers", type=lambda s: s.split(","), default=ALL_SERVERS)
    parser.add_argument("--mlserver-workers", type=int, default=0, help="MLServer parallel_workers (default 0)")
    parser.add_argument("--nice", type=int, default=0, help="run servers and wrk at this nice level (e.g. -10)")
    parser.add_argument("--port", type=int, default=18000)
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where the JSON and markdown go")
    parser.add_argument("--quick", action="store_true", help="1 repeat of 2 s, 1 s warm-up: a harness check")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.repeats = 2.0, 1.0, 1
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = " ".join([".venv/bin/python", "benchmarks/serving.py", *(sys.argv[1:] if argv is None else argv)])
    environments.ensure_wrk()
    if any(server.startswith(("ours-grpc", "grpc-floor")) for server in args.servers):
        environments.ensure_h2load()
    started = datetime.datetime.now(datetime.UTC)
    load_at_start = os.getloadavg()
    serving_at_start = machine()["uncommitted_serving_changes"]
    with tempfile.TemporaryDirectory(prefix="modeldeploy-bench-") as scratch:
        args.work = Path(scratch)
        args.logs = args.work / "logs"
        args.logs.mkdir()
        models = args.work / "models"
        print(f"training the examples into {models}", flush=True)
        parity = training.train(models)
        body = models / f"{NAME}-request.json"
        payload = {"rows": json.loads(body.read_text())["inputs"][0]["shape"][0], "bytes": len(body.read_bytes())}
        limits, runs = {}, []
        for version in args.versions:
            limits[f"v{version}"] = raw_limit(models, version, body, args)
            print(f"  v{version} limit: {limits[f'v{version}']}", flush=True)
            runs += measure_model(version, models, body, args)
    results = {
        "command": command,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "loadavg_at_start": load_at_start,
            "uncommitted_serving_changes_at_start": serving_at_start,
            **machine(),
        },
        "settings": {k: v for k, v in vars(args).items() if k not in ("work", "logs", "out")},
        "payload": payload,
        "parity": parity,
        "limit": limits,
        "runs": runs,
        "summary": report.summarize(runs),
    }
    results["ratios"] = report.ratios(results["summary"])
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"serving-{started:%Y-%m-%d-%H%M}{'-quick' if args.quick else ''}"
    raw = write_raw(stem, results)
    markdown = report.markdown(results)
    stem.with_name(f"{stem.name}.md").write_text(markdown)
    print(markdown)
    print(f"wrote {raw} and {stem}.md")


if __name__ == "__main__":
    main()
