"""Shadow traffic's cost to stable: p99 and throughput with mirroring at fraction 1.0 against off.

One stable server (breast-cancer v1, core 0) and one canary (v2 by default, a core of its
own where there is one) are started once. Rounds alternate the two modes on the same
stable process by rewriting its shadow config file, the way the operator starts and stops
a shadow: off then on, on then off, and so on. Each measurement is a closed loop
(h2load over HTTP/1.1, one thread on core 1, --concurrency keep-alive connections) posting
the example request --requests times, after --warmup requests. Per mode: the median over rounds of
throughput, p50 and p99, stable's CPU seconds per 1,000 requests, and, with mirroring on,
the copies compared and dropped; then the ratios on / off, each the median over rounds of
that round's on / off (the two run back to back, which cancels a shared machine's drift). Issue 13's target: p99 within
10% and throughput within 10%.

Needs h2load (Debian's nghttp2-client) and taskset. Record results only from a quiet
machine. On a 2-core machine the canary shares core 1 with h2load; it runs at nice 19
there, so in 'on' rounds it takes only the CPU the load generator leaves (in a cluster the
canary pods have CPU of their own) rather than delaying h2load's clock and sends. The CPU
seconds per 1,000 requests of stable are the figure that depends on neither.

    .venv/bin/python benchmarks/shadow.py --requests 20000 --concurrency 16 --rounds 3
    .venv/bin/python benchmarks/shadow.py --requests 500 --rounds 1 --warmup 100   # a harness check
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from load import LOAD_CORE
from prometheus_client.parser import text_string_to_metric_families
from servers import Server, ours

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples"))
import train as examples  # noqa: E402  (examples/ is not a package)

NAME = "breast-cancer"
SHADOW_REQUESTS = "modeldeploy_shadow_requests"
SHADOW_FRACTION = "modeldeploy_shadow_fraction"
MIRRORED_REQUESTS = "modeldeploy_mirrored_requests"


def h2load_count(url: str, body: Path, connections: int, requests: int) -> dict[str, Any]:
    """A closed loop of exactly `requests` HTTP/1.1 POSTs from h2load, latencies from its per-request log."""
    command = ["taskset", "-c", LOAD_CORE, "h2load", "--h1", "-t1", f"-c{connections}", "-m1", f"-n{requests}"]
    command += ["-H", "content-type: application/json", "-d", str(body)]
    with tempfile.NamedTemporaryFile(prefix="h2load-", suffix=".log") as log:
        command += ["--log-file", log.name, url]
        done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=3600)
        timings = [int(line.split("\t")[2]) for line in Path(log.name).read_text().splitlines() if line.strip()]
    finished = re.search(r"finished in ([\d.]+)(\w+), ([\d.]+) req/s", done.stdout)
    status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", done.stdout)
    if finished is None or status is None or len(timings) < 2:
        raise RuntimeError(f"h2load printed no summary:\n{done.stdout}\n{done.stderr}")
    quantiles = statistics.quantiles(timings, n=100, method="inclusive")
    return {
        "rps": float(finished.group(3)),
        "p50_ms": quantiles[49] / 1000,
        "p99_ms": quantiles[98] / 1000,
        "max_ms": max(timings) / 1000,
        "requests": len(timings),
        "errors": requests - int(status.group(1)),
    }


def metrics(server: Server) -> dict[str, Any]:
    """The mirroring state of a server: the fraction per shadow version, and copies by outcome."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    state: dict[str, Any] = {"fraction": {}, "copies": {}, "calls": 0.0}
    for family in text_string_to_metric_families(text):
        if family.name == SHADOW_FRACTION:
            state["fraction"] = {s.labels["shadow_version"]: s.value for s in family.samples}
        elif family.name == MIRRORED_REQUESTS:  # on the canary: calls that carried copies
            state["calls"] += sum(s.value for s in family.samples if s.name.endswith("_total"))
        elif family.name == SHADOW_REQUESTS:
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    outcome = sample.labels["outcome"]
                    state["copies"][outcome] = state["copies"].get(outcome, 0.0) + sample.value
    return state


def switch(config: Path, stable: Server, canary: Server | None, version: str) -> None:
    """Mirroring on (to canary) or off, as the operator does it; returns once stable follows."""
    scratch = config.with_suffix(".new")
    document = {"target": f"http://127.0.0.1:{canary.port}", "fraction": 1.0, "version": version} if canary else None
    scratch.write_text(json.dumps(document) if document else "")
    scratch.replace(config)
    expected = {version: 1.0} if canary else {}
    deadline = time.monotonic() + 30
    while metrics(stable)["fraction"] != expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"stable did not switch mirroring to {expected or 'off'} within 30 s")
        time.sleep(0.1)


def measure(stable: Server, canary: Server, body: Path, args: argparse.Namespace) -> dict[str, Any]:
    h2load_count(stable.url, body, args.concurrency, args.warmup)
    before_cpu, before, calls_before = stable.cpu_seconds(), metrics(stable)["copies"], metrics(canary)["calls"]
    run = h2load_count(stable.url, body, args.concurrency, args.requests)
    time.sleep(0.2)  # the last copies reach the canary
    after_cpu, after, calls_after = stable.cpu_seconds(), metrics(stable)["copies"], metrics(canary)["calls"]
    run["cpu_ms_per_1000"] = (after_cpu - before_cpu) * 1e6 / max(1, run["requests"])
    run["copies"] = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after if after.get(k, 0.0) - before.get(k, 0.0)}
    run["shadow_calls"] = calls_after - calls_before  # HTTP exchanges that carried the copies
    return run


def median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(run[key] for run in runs))


def report(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        mode: {key: median(found, key) for key in ("rps", "p50_ms", "p99_ms", "cpu_ms_per_1000")}
        for mode, found in runs.items()
    }
    copies = [run["copies"] for run in runs["on"]]
    sent = sum(sum(c.values()) for c in copies)
    calls = sum(run["shadow_calls"] for run in runs["on"])
    # Each round's on and off run back to back, so their ratio cancels the drift of a shared
    # machine (the same mode measured 15% apart minutes later here); the median of the
    # rounds' ratios is the figure, the medians of each mode are shown beside it.
    pairs = list(zip(runs["on"], runs["off"], strict=True))

    def paired(key: str) -> float:
        return float(statistics.median(on_run[key] / off_run[key] for on_run, off_run in pairs))

    summary["ratios"] = {
        "throughput_on_over_off": paired("rps"),
        "p99_on_over_off": paired("p99_ms"),
        "cpu_on_over_off": paired("cpu_ms_per_1000"),
        "copies_dropped_share": sum(c.get("dropped", 0.0) for c in copies) / sent if sent else 0.0,
        "copies_compared_share": sum(c.get("ok", 0.0) for c in copies) / sent if sent else 0.0,
        "copies_per_shadow_call": sum(c.get("ok", 0.0) for c in copies) / calls if calls else 0.0,
    }
    return summary


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        "| mirroring | throughput (req/s) | p50 (ms) | p99 (ms) | stable CPU ms / 1,000 req |",
        "|---|---|---|---|---|",
    ]
    for mode in ("off", "on"):
        s = summary[mode]
        lines.append(
            f"| {mode} | {s['rps']:.0f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['cpu_ms_per_1000']:.0f} |"
        )
    r = summary["ratios"]
    lines += [
        "",
        f"on / off (median of the rounds' paired ratios): throughput {r['throughput_on_over_off']:.3f}, "
        f"p99 {r['p99_on_over_off']:.3f}, "
        f"CPU {r['cpu_on_over_off']:.3f}; copies compared {r['copies_compared_share']:.1%}, "
        f"dropped {r['copies_dropped_share']:.1%}, {r['copies_per_shadow_call']:.1f} copies per call to the shadow "
        "(target: throughput >= 0.90, p99 <= 1.10)",
    ]
    return "\n".join(lines)


def check_free(port: int) -> None:
    """A server left over from an earlier run would answer in place of the one started here."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is fine
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise SystemExit(f"port {port} is taken (a server from an earlier run?); pass another --port") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000, help="answers per measurement (default 20000)")
    parser.add_argument("--warmup", type=int, default=2000, help="answers before each measurement (default 2000)")
    parser.add_argument("--concurrency", type=int, default=16, help="h2load connections (default 16)")
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs, order alternating (default 3)")
    parser.add_argument("--canary-version", default="2", help="breast-cancer version of the shadow (default 2)")
    default_core = "2" if (os.cpu_count() or 1) >= 3 else LOAD_CORE
    parser.add_argument("--canary-core", default=default_core, help=f"core of the canary (default {default_core})")
    default_nice = 0 if default_core != LOAD_CORE else 19
    parser.add_argument(
        "--canary-nice",
        type=int,
        default=default_nice,
        help=f"nice level of the canary (default {default_nice}: 19 when it shares the load generator's core, "
        "so it takes only the CPU h2load leaves, as a canary pod on its own CPU would)",
    )
    parser.add_argument("--stable-flags", default="", help="more serve flags for stable, e.g. '--shadow-connections 2'")
    parser.add_argument("--port", type=int, default=18100)
    parser.add_argument("--out", type=Path, help="also write the runs and the summary as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="modeldeploy-shadow-bench-") as scratch:
        work = Path(scratch)
        models, logs = work / "models", work / "logs"
        logs.mkdir()
        print(f"training the examples into {models}", flush=True)
        examples.train(models)
        body = models / f"{NAME}-request.json"
        config = work / "shadow.json"
        config.write_text("")
        v1, shadow = models / f"{NAME}-v1.onnx", models / f"{NAME}-v{args.canary_version}.onnx"
        flags = ["--shadow-config", str(config), *args.stable_flags.split()]
        stable = ours("stable", "stable", v1, NAME, args.port, "--version", "1", *flags)
        canary = ours("canary", "canary", shadow, NAME, args.port + 1, "--version", args.canary_version)
        # Server.start pins to the server core; the inner taskset moves the canary off it.
        canary.command = ["taskset", "-c", args.canary_core, "nice", "-n", str(args.canary_nice), *canary.command]
        canary.env = {"MODELDEPLOY_TRACK": "canary", "MODELDEPLOY_SHADOW_TOKEN": "benchmark"}
        stable.env = {"MODELDEPLOY_SHADOW_TOKEN": "benchmark"}  # copies carry it; the canary takes only those
        runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        check_free(stable.port)
        check_free(canary.port)
        try:
            for server in (stable, canary):
                server.start(logs, 0)
                server.wait_ready(body.read_bytes())
            for round_ in range(args.rounds):
                for mode in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
                    switch(config, stable, canary if mode == "on" else None, args.canary_version)
                    run = measure(stable, canary, body, args)
                    runs[mode].append(run)
                    print(f"round {round_ + 1} mirroring {mode}: {json.dumps(run)}", flush=True)
        finally:
            for server in (stable, canary):
                server.stop()
    summary = report(runs)
    print(markdown(summary))
    if args.out is not None:
        args.out.write_text(
            json.dumps({"settings": vars(args) | {"out": str(args.out)}, "runs": runs, "summary": summary}, indent=1)
        )
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
