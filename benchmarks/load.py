"""Load from wrk (REST) and h2load (gRPC): one thread on core 1, a fixed number of
connections, the payload on every request.

Both are closed-loop: each connection sends its next request when the last one is
answered (h2load with one stream per connection, `-m1`), so concurrency N means N requests
in flight. Latencies are the tool's own (post.lua prints wrk's; h2load's per-request log
gives ours), throughput is answered requests over the run's measured duration.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from servers import MODEL_INFER

HERE = Path(__file__).resolve().parent
LOAD_CORE = "1"


def wrk(url: str, body: Path, connections: int, seconds: float, nice: int = 0) -> dict[str, Any]:
    command = ["taskset", "-c", LOAD_CORE] + (["nice", "-n", str(nice)] if nice else [])
    command += ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "10s"]
    command += ["-s", str(HERE / "post.lua"), url, "--", str(body)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no BENCH line:\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix("BENCH "))
    errors = sum(v for k, v in raw.items() if k.startswith("errors_"))
    return {
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "requests": raw["requests"],
        "errors": errors,
        "wrk": raw,
    }


def h2load_grpc(
    port: int, body: Path, connections: int, seconds: float, answer_bytes: int, nice: int = 0, path: str = ""
) -> dict[str, Any]:
    """gRPC unary calls from h2load: `body` is the framed request, posted on every call.

    h2load sees HTTP statuses only, and gRPC answers a failed call with 200 and an error in
    its trailers. A failed call carries no message, so the calls short of a full answer in the
    response bytes (`answer_bytes` each, the framed answer to the payload) are the errors.
    """
    command = ["taskset", "-c", LOAD_CORE] + (["nice", "-n", str(nice)] if nice else [])
    command += ["h2load", "-t1", f"-c{connections}", "-m1", f"-D{max(1, round(seconds))}"]
    command += ["-H", "content-type: application/grpc", "-H", "te: trailers", "-d", str(body)]
    with tempfile.NamedTemporaryFile(prefix="h2load-", suffix=".log") as log:
        command += ["--log-file", log.name, f"http://127.0.0.1:{port}{path or MODEL_INFER}"]
        done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60)
        timings = [int(line.split("\t")[2]) for line in Path(log.name).read_text().splitlines() if line.strip()]
    finished = re.search(r"finished in ([\d.]+)(\w+), ([\d.]+) req/s", done.stdout)
    counts = re.search(r"requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed", done.stdout)
    status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", done.stdout)
    data = re.search(r"\((\d+)\) data", done.stdout)  # the exact count of response body bytes
    if finished is None or counts is None or status is None or data is None or not timings:
        raise RuntimeError(f"h2load printed no summary:\n{done.stdout}\n{done.stderr}")
    requests = int(counts.group(1))
    quantiles = statistics.quantiles(timings, n=100, method="inclusive") if len(timings) > 1 else timings * 99
    full_answers = int(data.group(1)) // answer_bytes if answer_bytes else requests
    failed = int(counts.group(2)) + sum(int(status.group(i)) for i in (2, 3, 4))
    return {
        "rps": float(finished.group(3)),
        "p50_ms": quantiles[49] / 1000,
        "p90_ms": quantiles[89] / 1000,
        "p99_ms": quantiles[98] / 1000,
        "max_ms": max(timings) / 1000,
        "requests": requests,
        "errors": max(failed, requests - full_answers),
        "h2load": done.stdout[-1500:],
    }
