"""Cost of reading telemetry: operator CPU per pod per read (scrape + parse + window).

Canary analysis and drift detection read every serving pod's /metrics when a judgement is
due. This measures what one such read costs the operator for the 30-feature breast-cancer
model, with our parser (operator/modeldeploy_operator/telemetry/counters.py) and, for comparison,
with prometheus-client's own text parser feeding the same window code, and extrapolates
to 1,000 ModelDeployments x 2 pods read every 60 s (target: under 25% of one core). It also
measures one drift evaluation (both stable pods read and windowed, then drift.assess with
PSI over 30 features and the prediction) and extrapolates to 1,000 deployments at the
default interval of 1 minute (target: under 10% of one core).

It starts a real `modeldeploy serve` of breast-cancer v1, sends it every row of the
reference CSV (so every bucket, class and counter is on the page, as on a pod that has
served for a while), then reads it --reads times in a row, each read a window against the
previous one, and counts this process's CPU (time.process_time: user + system, every
thread) per read. It also reports the serving process's CPU per scrape (rendering the
page), read from /proc. Measurements, not a test: record figures only on a quiet machine.

    .venv/bin/python benchmarks/telemetry_read.py                 # 300 reads per variant
    .venv/bin/python benchmarks/telemetry_read.py --reads 30      # a quick check of the harness
    .venv/bin/python benchmarks/telemetry_read.py --json out.json # also write the figures
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "serving"))
sys.path.insert(0, str(REPO / "operator"))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from modeldeploy_operator.reading.scraping import PodScraper, ScrapeFailed, scrape_pages  # noqa: E402
from modeldeploy_operator.telemetry import counters as c  # noqa: E402
from modeldeploy_operator.telemetry import windows as w  # noqa: E402
from process_stats import cpu_seconds  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from tests.serving.harness import ServeProcess, infer_body  # noqa: E402

DEPLOYMENTS, PODS_PER_DEPLOYMENT, EVERY_SECONDS = 1000, 2, 60.0
TARGET_SHARE = 0.25
DRIFT_TARGET_SHARE = 0.10


def client_parser_counters(pod: str, text: str) -> c.PodCounters:
    """prometheus-client's parser, then the same keying as ours: the comparison's baseline."""
    samples = [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in c.SAMPLE_NAMES and (sample.name != c.STARTED or sample.labels.get("outcome") == "ok")
    ]
    return c.counters_from_samples(pod, samples)


async def read_with(parse: Callable[[str, str], c.PodCounters], pod: c.Pod) -> c.Reading:
    at = time.time()
    page = (await scrape_pages([pod]))[pod.name]
    if isinstance(page, ScrapeFailed):
        raise SystemExit(page.message)
    return c.Reading(at, {pod.name: parse(pod.name, page)})


async def measure(reads: int, one_read: Callable[[], Awaitable[c.Reading]], server_pid: int) -> dict[str, float]:
    """CPU of this process per read (read + window against the previous read), and the server's.

    All reads run on one event loop, as in the operator: the loop's start is not counted.
    """
    previous = await one_read()
    per_read: list[float] = []
    server_before, wall = cpu_seconds(server_pid), time.perf_counter()
    for _ in range(reads):
        started = time.process_time()
        current = await one_read()
        window = w.window(previous, current)
        per_read.append(time.process_time() - started)
        assert not window.partial and window.tracks["stable"].rows == 0, "the pod took traffic during the run"
        previous = current
    server = (cpu_seconds(server_pid) - server_before) / reads
    return {
        "operator_cpu_ms_median": statistics.median(per_read) * 1e3,
        "operator_cpu_ms_mean": statistics.fmean(per_read) * 1e3,
        "server_cpu_ms_per_scrape": server * 1e3,
        "wall_ms_per_read": (time.perf_counter() - wall) / reads * 1e3,
    }


def parse_only(reads: int, parse: Callable[[str, str], c.PodCounters], text: str) -> float:
    started = time.process_time()
    for _ in range(reads):
        parse("pod", text)
    return (time.process_time() - started) / reads * 1e3


def window_only(reads: int, text: str) -> float:
    """CPU of one window between two reads of the same pod's page (already parsed)."""
    previous = c.Reading(0.0, {"pod": c.parse_metrics("pod", text)})
    current = c.Reading(60.0, {"pod": c.parse_metrics("pod", text)})
    started = time.process_time()
    for _ in range(reads):
        w.window(previous, current)
    return (time.process_time() - started) / reads * 1e3


def assess_only(reads: int, text: str, model: Path) -> float:
    """CPU of one drift evaluation's statistics (drift.assess over a 2-pod window, PSI)."""
    import onnxruntime
    from modeldeploy_operator.drift.assessment import DriftSettings, Reference, assess
    from modeldeploy_operator.reading.judging import drift_window
    from modeldeploy_serving.profile import read_profile

    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    profile = read_profile(session.get_modelmeta().custom_metadata_map)
    assert profile is not None, f"{model} has no reference profile"
    reference = Reference.from_profile(profile)
    counters = {pod: c.parse_metrics(pod, text) for pod in ("pod-a", "pod-b")}
    track = w.window(c.Reading(0.0, {}), c.Reading(60.0, counters)).tracks["stable"]
    settings = DriftSettings(method="psi", threshold=None, feature_share=0.3, min_samples=200)
    started = time.process_time()
    for _ in range(reads):
        assess(reference, drift_window(track), settings)
    return (time.process_time() - started) / reads * 1e3


def extrapolate(cpu_ms: float) -> float:
    """Share of one core to read 1,000 deployments x 2 pods every 60 s."""
    return DEPLOYMENTS * PODS_PER_DEPLOYMENT / EVERY_SECONDS * cpu_ms / 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=300, help="reads per variant (default 300)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO / "examples"))
    import train  # examples/train.py, as a user runs it

    with tempfile.TemporaryDirectory(prefix="telemetry-read-") as folder:
        models = Path(folder)
        train.train(models)
        model = models / "breast-cancer-v1.onnx"
        rows = np.loadtxt(models / "breast-cancer-reference.csv", delimiter=",", skiprows=1).astype(np.float32)
        env = {"PYTHONPATH": os.pathsep.join([str(REPO / "cli"), str(REPO / "serving"), str(REPO / "operator")])}
        server = ServeProcess("--model", str(model), "--name", "breast-cancer", env=env)
        try:
            server.wait_ready()
            with httpx.Client(base_url=server.url, timeout=30) as client:
                for start in range(0, len(rows), 16):
                    answer = client.post("/v2/models/breast-cancer/infer", json=infer_body(rows[start : start + 16]))
                    answer.raise_for_status()
                text = client.get("/metrics").text
            pod = c.Pod("breast-cancer-stable-0", "127.0.0.1", server.port)
            scraper = PodScraper()
            variants: dict[str, Callable[[], Awaitable[c.Reading]]] = {
                "ours": lambda: scraper.read([pod]),
                "prometheus_client parser": lambda: read_with(client_parser_counters, pod),
            }
            results: dict[str, Any] = {}
            for name, one_read in variants.items():
                figures = asyncio.run(measure(args.reads, one_read, server.process.pid))
                parse = c.parse_metrics if name == "ours" else client_parser_counters
                figures["parse_only_cpu_ms"] = parse_only(args.reads, parse, text)
                figures["window_only_cpu_ms"] = window_only(args.reads, text)
                figures["share_of_one_core_at_1000x2_every_60s"] = extrapolate(figures["operator_cpu_ms_median"])
                results[name] = figures
            drift_ms = assess_only(args.reads, text, model)
        finally:
            server.close()

    kept = len(c.parse_metrics("p", text).values)
    page = {"bytes": len(text.encode()), "lines": text.count("\n"), "series_kept": kept}
    print(f"page: {page['bytes']} bytes, {page['lines']} lines, {kept} series kept; {args.reads} reads\n")
    print(
        "| parser | operator CPU ms/read (median) | parse only ms | window only ms | server CPU ms/scrape "
        "| 1,000 x 2 pods / 60 s |"
    )
    print("|---|---|---|---|---|---|")
    for name, figures in results.items():
        print(
            f"| {name} | {figures['operator_cpu_ms_median']:.2f} | {figures['parse_only_cpu_ms']:.2f} "
            f"| {figures['window_only_cpu_ms']:.2f} "
            f"| {figures['server_cpu_ms_per_scrape']:.2f} "
            f"| {figures['share_of_one_core_at_1000x2_every_60s']:.1%} of one core |"
        )
    ours = results["ours"]["share_of_one_core_at_1000x2_every_60s"]
    print(f"\ntarget: under {TARGET_SHARE:.0%} of one core: {'met' if ours < TARGET_SHARE else 'NOT met'} ({ours:.1%})")
    # A drift evaluation (issue 10): read both stable pods, window them, assess the window.
    evaluation_ms = 2 * results["ours"]["operator_cpu_ms_median"] + drift_ms
    drift_share = DEPLOYMENTS / EVERY_SECONDS * evaluation_ms / 1e3
    results["drift_evaluation"] = {"assess_cpu_ms": drift_ms, "evaluation_cpu_ms": evaluation_ms, "share": drift_share}
    print(
        f"\ndrift evaluation (2 pods read and windowed + drift.assess {drift_ms:.2f} ms): {evaluation_ms:.2f} ms; "
        f"1,000 deployments every 60 s (the default spec.drift.interval): {drift_share:.1%} of one core "
        f"(target under {DRIFT_TARGET_SHARE:.0%}: {'met' if drift_share < DRIFT_TARGET_SHARE else 'NOT met'})"
    )
    if args.json:
        document = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
            "page": page,
            "reads": args.reads,
            "results": results,
            "git": subprocess.run(
                ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
            ).stdout.strip(),
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
