"""Load from wrk: one thread on core 1, a fixed number of connections, the payload on every request.

wrk is closed-loop: each connection sends its next request when the last one is answered,
so concurrency N means N requests in flight. Latencies are wrk's (post.lua prints them
with its summary), throughput is answered requests over the run's measured duration.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

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
