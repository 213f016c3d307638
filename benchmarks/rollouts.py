"""Rollouts on the full local cluster: how fast a bad model is pulled back, and what a promotion costs.

One run, on the local cluster (`python -m e2e.cluster up`; brought up here if it is not),
with the operator as a process and the project's image in the node's containerd, and a load
generator (e2e/load.py: real breast-cancer rows, a fresh connection per request) the whole
time:

1. promotion: version 1 serving, version 2 (the better model) applied; failed requests
   (target 0) and p99 latency during the rollout, against p99 over the same length of time
   before it.
2. rollbacks, `--rollbacks` times: version 3 (trained on flipped labels) applied over the
   stable version (then `kubectl modeldeploy retry` for the next round); for each, the moment
   the step was due, the moment status first showed the rollback, and the moment no canary
   pod was a ready endpoint in the Service's EndpointSlices any more, each seen by polling
   every 50 ms. "Failing check to 100% stable" is the last minus the second; the
   prediction-shift value each rollback was decided on is kept too.

Writes results/rollouts-<date>.md (the summary) and .json.gz (the raw data).
Time it only on a quiet machine.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from raw_results import write_raw  # noqa: E402

from e2e.cluster.pytest_plugin import Cluster  # noqa: E402
from e2e.load import Load  # noqa: E402
from e2e.manifests import cancer, cancer_digests  # noqa: E402
from e2e.operator_fixtures import fresh_namespace_on_local_cluster, wait_for  # noqa: E402

Obj = dict[str, Any]
NAMESPACE = "bench-rollouts"
POLL = 0.05


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rollbacks", type=int, default=10, help="rollbacks to time (default 10)")
    parser.add_argument("--interval", default="10s", help="spec.rollout.interval (default 10s)")
    parser.add_argument("--workers", type=int, default=2, help="load generator threads (default 2)")
    parser.add_argument("--tag", default="", help="appended to the results' file names")
    return parser.parse_args(argv)


def mdep(version: str, sha256: str, interval: str, label: str | None = None) -> str:
    rollout = {
        "steps": [50],
        "interval": interval,
        "progressDeadline": "3m",
        "analysis": {"minRequests": 20, "maxLatencyP99Ms": 2000},
    }
    return cancer(version, sha256, replicas=2, rollout=rollout)


class Watcher:
    """Reads the ModelDeployment and the Service's EndpointSlices through one API client."""

    def __init__(self, kube: Cluster) -> None:
        from kubernetes import client

        api = kube.api_client()
        self.custom, self.discovery = client.CustomObjectsApi(api), client.DiscoveryV1Api(api)

    def status(self) -> Obj:
        body = self.custom.get_namespaced_custom_object(
            "modeldeploy.dev", "v1alpha1", NAMESPACE, "modeldeployments", "cancer"
        )
        return body.get("status") or {}

    def canary_endpoints(self) -> int:
        selector = "kubernetes.io/service-name=cancer"
        slices = self.discovery.list_namespaced_endpoint_slice(NAMESPACE, label_selector=selector)
        return sum(
            1
            for piece in slices.items
            for endpoint in piece.endpoints or []
            if endpoint.target_ref is not None
            and endpoint.target_ref.name.startswith("cancer-canary")
            and endpoint.conditions is not None
            and endpoint.conditions.ready
        )


def iso_seconds(text: str) -> float:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC).timestamp()


def promotion(kube: Cluster, watcher: Watcher, load: Load, digest: dict[str, str], interval: str) -> Obj:
    before_start = time.monotonic()
    time.sleep(20)  # p99 of the same load before the rollout, for comparison
    started = time.monotonic()
    kube.kubectl("-n", NAMESPACE, "apply", "-f", "-", input=mdep("2", digest["2"], interval))
    failed_before = load.failed()
    entry = wait_for("version 2 promoted", lambda: _newest(watcher, "2", "Promoted"), timeout=300, every=POLL)
    time.sleep(8)  # the canary's pods leave while the load goes on
    ended = time.monotonic()
    during = load.p99(started, ended)
    steady = load.p99(before_start, started)
    return {
        "seconds": round(ended - started, 1),
        "failed": load.failed() - failed_before,
        "requests": sum(1 for end, _ in load.latencies if started <= end <= ended),
        "p99_ms_during": round(during * 1000, 1) if during else None,
        "p99_ms_before": round(steady * 1000, 1) if steady else None,
        "analysis": entry.get("analysis"),
    }


def _newest(watcher: Watcher, version: str, outcome: str, after: int = 0) -> Obj | None:
    """The newest history entry if it is newer than revision `after` and as expected
    (history keeps 10 entries: its length stops growing, its revisions do not)."""
    history = watcher.status().get("history") or []
    newest = history[0] if history else {}
    if newest.get("revision", 0) > after and newest.get("version") == version and newest.get("outcome") == outcome:
        return dict(newest)
    return None


def rollback(kube: Cluster, watcher: Watcher, round_: int, digest: dict[str, str], interval: str) -> Obj:
    entries = max((e.get("revision", 0) for e in watcher.status().get("history") or []), default=0)
    if round_ == 0:
        kube.kubectl("-n", NAMESPACE, "apply", "-f", "-", input=mdep("3", digest["3"], interval))
    else:
        plugin = [sys.executable, "-m", "modeldeploy_cli.plugin", "-n", NAMESPACE, "retry", "cancer"]
        env = {**os.environ, "KUBECONFIG": str(kube.kubeconfig)}
        subprocess.run(plugin, check=True, capture_output=True, env=env)

    def stepping() -> Obj | None:
        canary = watcher.status().get("canary") or {}
        return canary if canary.get("stepStartedAt") else None

    canary = wait_for("a canary step", stepping, timeout=240)
    due = iso_seconds(canary["stepStartedAt"]) + float(interval.rstrip("s"))
    wait_for("canary endpoints", watcher.canary_endpoints, timeout=60, every=POLL)
    gone_wall = wait_for("no canary endpoint", lambda: watcher.canary_endpoints() == 0 and time.time(), 240, POLL)
    entry = wait_for("the rollback in status", lambda: _newest(watcher, "3", "RolledBack", entries), 60, POLL)
    shown_wall = time.time()
    shift = next((c for c in entry.get("analysis") or [] if c["check"] == "predictionShift"), {})
    return {
        "due_to_stable_s": round(gone_wall - due, 2),  # step due (whole seconds, so never late) to 100% stable
        "due_to_status_s": round(shown_wall - due, 2),
        "message": entry.get("message"),
        "prediction_shift": shift.get("value"),
        "decided_by": entry.get("decidedBy"),
    }


def summary(results: Obj) -> str:
    promoted, rounds = results["promotion"], results["rollbacks"]
    due_s = [r["due_to_stable_s"] for r in rounds]
    lines = [
        f"# Rollouts on the local cluster, {results['date']}",
        "",
        f"Command: `{results['command']}`; load average {results['loadavg_at_start']} at the start, "
        f"{results['loadavg_at_end']} at the end. Interval {results['interval']}, steps [50], 2 replicas, "
        f"{results['workers']} load threads.",
        "",
        "## Promotion of version 2 under load",
        "",
        f"- failed requests during the promotion: **{promoted['failed']}** of {promoted['requests']} (target 0)",
        f"- p99 during it: {promoted['p99_ms_during']} ms; before it: {promoted['p99_ms_before']} ms",
        f"- apply to promoted and the canary gone: {promoted['seconds']} s",
        "",
        f"## Rollback of version 3, {len(rounds)} times",
        "",
        f"- the step due (its check runs) to no canary endpoint in the Service's EndpointSlices: median "
        f"**{statistics.median(due_s):.2f} s**, max **{max(due_s):.2f} s** (target under 5 s). The due time "
        "comes from status.canary.stepStartedAt, truncated to the second, so these figures are never low.",
        "",
        "| round | due to 100% stable (s) | due to status (s) | prediction shift | decided by |",
        "|---|---|---|---|---|",
        *(
            f"| {n + 1} | {r['due_to_stable_s']} | {r['due_to_status_s']} | {r['prediction_shift']} "
            f"| {r['decided_by']} |"
            for n, r in enumerate(rounds)
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d-%H%M")
    results: Obj = {
        "command": " ".join([".venv/bin/python", "benchmarks/rollouts.py", *(argv or sys.argv[1:])]),
        "date": stamp,
        "loadavg_at_start": os.getloadavg()[0],
        "interval": args.interval,
        "workers": args.workers,
    }
    operators, image = fresh_namespace_on_local_cluster(NAMESPACE)
    kube = operators.kube
    digest = cancer_digests()
    watcher = Watcher(kube)
    try:
        operators.start("--serving-image", image, "--image-pull-policy", "IfNotPresent")
        kube.kubectl("-n", NAMESPACE, "apply", "-f", "-", input=mdep("1", digest["1"], args.interval))
        kube.kubectl("-n", NAMESPACE, "wait", "--for=condition=Ready", "mdep/cancer", "--timeout=240s")
        address = kube.kubectl("-n", NAMESPACE, "get", "service", "cancer", "-o", "jsonpath={.spec.clusterIP}")
        with Load(address, workers=args.workers) as load:
            print("promotion of version 2 under load", flush=True)
            results["promotion"] = promotion(kube, watcher, load, digest, args.interval)
            promoted = results["promotion"]
            print(f"  {promoted['failed']} failed, p99 {promoted['p99_ms_during']} ms", flush=True)
            results["rollbacks"] = []
            for n in range(args.rollbacks):
                measured = rollback(kube, watcher, n, digest, args.interval)
                results["rollbacks"].append(measured)
                print(
                    f"rollback {n + 1}/{args.rollbacks}: {measured['due_to_stable_s']} s from due to stable, "
                    f"shift {measured['prediction_shift']}",
                    flush=True,
                )
            results["load"] = {"answers": dict(load.answers), "versions": dict(load.versions)}
    finally:
        print(operators.running[-1].logs() if operators.running and os.environ.get("BENCH_VERBOSE") else "", end="")
        operators.stop_all()
        kube.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false")
    results["loadavg_at_end"] = os.getloadavg()[0]
    out = REPO / "benchmarks" / "results" / f"rollouts-{stamp}{'-' + args.tag if args.tag else ''}"
    out.with_suffix(".md").write_text(summary(results))
    write_raw(out, results)
    print(summary(results))


if __name__ == "__main__":
    main()
