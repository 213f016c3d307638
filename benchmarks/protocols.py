"""One model, four ways to send it a batch: JSON, binary tensor data, gRPC typed, gRPC raw.

    .venv/bin/python benchmarks/protocols.py            # 3 repeats of 5 s per point
    .venv/bin/python benchmarks/protocols.py --quick    # 1 repeat of 2 s, to check the harness

Trains the examples, starts our server for breast-cancer v2 (the random forest, profile
embedded, so telemetry is on) with --grpc-port, pinned to core 0, and sends the same rows
(--rows, default 1,000) as: a JSON request; the same request as binary tensor data
(Inference-Header-Content-Length, binary outputs); a gRPC ModelInfer with typed contents;
and one with raw_input_contents. REST load comes from wrk (post_framed.lua), gRPC load
from h2load (Debian's nghttp2-client) posting the gRPC frame, both on core 1 at each
concurrency. Every form is checked once to answer the same labels before any load.
Writes results/protocols-<date>.json and prints a table. Figures are only worth recording
from a quiet machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import load
import numpy as np
import orjson
import servers
import training

sys.path.insert(0, str(servers.REPO / "serving"))
from modeldeploy_serving import inference_pb2 as pb

HERE = Path(__file__).resolve().parent
NAME = "breast-cancer"


def bodies(rows: np.ndarray, folder: Path) -> dict[str, Path]:
    """The four request bodies for the same rows, written to files the load generators read."""
    tensor = {"name": "input", "shape": list(rows.shape), "datatype": "FP32"}
    raw = rows.astype("<f4").tobytes()
    head = orjson.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}],
            "parameters": {"binary_data_output": True},
        }
    )
    typed = pb.ModelInferRequest(model_name=NAME)
    typed.inputs.add(name="input", datatype="FP32", shape=list(rows.shape)).contents.fp32_contents.extend(
        rows.reshape(-1).tolist()
    )
    raw_request = pb.ModelInferRequest(model_name=NAME)
    raw_request.inputs.add(name="input", datatype="FP32", shape=list(rows.shape))
    raw_request.raw_input_contents.append(raw)
    files = {
        "rest-json": orjson.dumps({"inputs": [{**tensor, "data": rows.tolist()}]}),
        "rest-binary": head + raw,
        "grpc-typed": typed.SerializeToString(),
        "grpc-raw": raw_request.SerializeToString(),
    }
    written = {}
    for key, data in files.items():
        path = folder / f"{key}.bin"
        path.write_bytes(data if key.startswith("rest") else grpc_frame(data))
        written[key] = path
    (folder / "rest-binary.header").write_text(f"Inference-Header-Content-Length: {len(head)}")
    return written


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: no compression flag, 4-byte big-endian length."""
    return struct.pack(">BI", 0, len(message)) + message


def check_answers(server: servers.Server, grpc_port: int, files: dict[str, Path], folder: Path) -> None:
    """Every form answers, and all four give the same labels."""
    labels: dict[str, list[int]] = {}
    labels["rest-json"] = [
        int(v) for v in orjson.loads(server.wait_ready(files["rest-json"].read_bytes()))["outputs"][0]["data"]
    ]
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        call = channel.unary_unary(servers.MODEL_INFER, response_deserializer=pb.ModelInferResponse.FromString)
        for key in ("grpc-typed", "grpc-raw"):
            answer = call(files[key].read_bytes()[5:], timeout=60)
            if answer.raw_output_contents:
                labels[key] = np.frombuffer(answer.raw_output_contents[0], "<i8").tolist()
            else:
                labels[key] = list(answer.outputs[0].contents.int64_contents)
    name, value = (folder / "rest-binary.header").read_text().split(": ", 1)
    request = urllib.request.Request(
        server.url,
        data=files["rest-binary"].read_bytes(),
        headers={name: value, "Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        length = int(answer.headers["Inference-Header-Content-Length"])
        content = answer.read()
    document = orjson.loads(content[:length])
    size = document["outputs"][0]["parameters"]["binary_data_size"]
    labels["rest-binary"] = np.frombuffer(content[length : length + size], "<i8").tolist()
    if len({json.dumps(v) for v in labels.values()}) != 1:
        raise SystemExit(f"the four forms answered different labels: { {k: v[:5] for k, v in labels.items()} }")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[16])
    parser.add_argument("--port", type=int, default=18400)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--quick", action="store_true", help="1 repeat of 2 s: a harness check")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.repeats = 2.0, 1
    for tool, package in (("wrk", "wrk"), ("h2load", "nghttp2-client"), ("curl", "curl")):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not on PATH; apt-get install {package}")
    started = datetime.datetime.now(datetime.UTC)
    runs = []
    with tempfile.TemporaryDirectory(prefix="modeldeploy-protocols-") as scratch:
        folder = Path(scratch)
        models = folder / "models"
        training.train(models)
        reference = np.loadtxt(models / f"{NAME}-reference.csv", delimiter=",", skiprows=1, dtype=np.float32)
        rows = np.resize(reference, (args.rows, reference.shape[1]))
        files = bodies(rows, folder)
        grpc_port = args.port + 1
        logs = folder / "logs"
        logs.mkdir()
        server = servers.ours(
            "ours", "ours", models / f"{NAME}-v2.onnx", NAME, args.port, "--grpc-port", str(grpc_port)
        )
        server.start(logs, 0)
        try:
            check_answers(server, grpc_port, files, folder)
            header = (folder / "rest-binary.header").read_text()
            for repeat in range(args.repeats):
                for connections in args.concurrency:
                    for key, body in files.items():
                        cpu = server.cpu_seconds()
                        if key == "rest-json":
                            result = load.wrk(server.url, body, connections, args.seconds)
                        elif key == "rest-binary":
                            result = wrk_framed(server.url, body, header, connections, args.seconds)
                        else:
                            result = load.h2load_grpc(grpc_port, body, connections, args.seconds, answer_bytes=0)
                        requests = result.get("requests") or result["rps"] * args.seconds
                        result["cpu_us_per_request"] = 1e6 * (server.cpu_seconds() - cpu) / max(1, requests)
                        runs.append({"form": key, "concurrency": connections, "repeat": repeat, **result})
                        print(
                            f"  {key:12} c{connections:<3} #{repeat}: {result['rps']:8.1f} req/s"
                            f"  cpu {result['cpu_us_per_request']:7.0f} us/req"
                            + (f"  ERRORS {result['errors']}" if result["errors"] else ""),
                            flush=True,
                        )
        finally:
            server.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"protocols-{started:%Y-%m-%d-%H%M}{'-quick' if args.quick else ''}.json"
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    stem.write_text(json.dumps({"started": started.isoformat(), "settings": settings, "runs": runs}, indent=1))
    print(f"wrote {stem}")


def wrk_framed(url: str, body: Path, header: str, connections: int, seconds: float) -> dict[str, Any]:
    command = ["taskset", "-c", load.LOAD_CORE, "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
    command += ["--latency", "--timeout", "10s", "-s", str(HERE / "post_framed.lua"), url, "--", str(body)]
    command += ["application/octet-stream", header]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no BENCH line:\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix("BENCH "))
    return {
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p99_ms": raw["p99_us"] / 1000,
        "requests": raw["requests"],
        "errors": sum(v for k, v in raw.items() if k.startswith("errors_")),
    }


if __name__ == "__main__":
    main()
