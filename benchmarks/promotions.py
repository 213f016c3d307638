"""Promotions under load, again and again, on a busy machine: does any request fail?

"Zero failed requests through a version change" must hold every time, not most times. This
runs the rollout test's promotion (steps [50], 2 replicas, a load of real breast-cancer rows
on a fresh connection per request) `--runs` times in a row, switching between versions 1
and 2 (each switch a canary judged and promoted), with `--hog` busy processes beside it so
the machine is as loaded as a full test run makes it, and with `--churn N` a Deployment of N
pods in another namespace scaled up and down every few seconds (each pod started or removed
runs the CNI plugins, which rewrite iptables rules beside kube-proxy, as the other tests'
pods do during a test run). `--stall-kube-proxy S` stops the node's kube-proxy for S seconds
(SIGSTOP, then SIGCONT) the moment the first pod of each promotion starts leaving: the case
of a kube-proxy slow to forget a leaving pod, made certain instead of waited for. Each run counts the requests that did
not get a 200; a run with failures prints them beside what the cluster did (e2e/timeline.py:
pods, EndpointSlices, kube-proxy's rule syncs), and `--stop-on-failure` ends the series
there. Writes results/promotions-<date>.md and .json.gz.

    .venv/bin/python benchmarks/promotions.py --runs 20 --hog 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from raw_results import write_raw  # noqa: E402

from e2e.cluster.pytest_plugin import Cluster  # noqa: E402
from e2e.faults import kube_proxy_stopped  # noqa: E402
from e2e.load import Load  # noqa: E402
from e2e.manifests import cancer, cancer_digests  # noqa: E402
from e2e.operator_fixtures import fresh_namespace_on_local_cluster, wait_for  # noqa: E402
from e2e.timeline import Timeline  # noqa: E402

Obj = dict[str, Any]
NAMESPACE = "bench-promotions"
ROLLOUT = {
    "steps": [50],
    "interval": "20s",
    "progressDeadline": "3m",
    "analysis": {"minRequests": 20, "maxLatencyP99Ms": 2000},
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="promotions in a row (default 20)")
    parser.add_argument("--hog", type=int, default=2, help="busy processes beside it (default 2, one per core)")
    parser.add_argument("--churn", type=int, default=0, help="pods scaled up and down beside it (default 0: none)")
    parser.add_argument(
        "--stall-kube-proxy", type=float, default=0, help="stop kube-proxy this long when a pod starts leaving"
    )
    parser.add_argument("--workers", type=int, default=1, help="load generator threads (default 1, as the test)")
    parser.add_argument("--stop-on-failure", action="store_true", help="end the series at the first failed request")
    parser.add_argument("--tag", default="", help="appended to the results' file names")
    return parser.parse_args(argv)


def _spin(stop: Any) -> None:
    while not stop.is_set():
        sum(range(10_000))


CHURN_NAMESPACE = "bench-promotions-churn"


def churn_deployment(image: str, pods: int) -> str:
    container = {
        "name": "sleep",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sleep", "infinity"],
        "resources": {"requests": {"cpu": "1m", "memory": "8Mi"}},
    }
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "churn"},
            "spec": {
                "replicas": pods,
                "selector": {"matchLabels": {"app": "churn"}},
                "template": {
                    "metadata": {"labels": {"app": "churn"}},
                    "spec": {"containers": [container], "terminationGracePeriodSeconds": 0},
                },
            },
        }
    )


def _churn(kube: Cluster, pods: int, stop: threading.Event) -> None:
    """Scale the churn Deployment between 0 and `pods` every 5 s until stopped."""
    up = False
    while not stop.wait(5):
        up = not up
        kube.kubectl("-n", CHURN_NAMESPACE, "scale", "deployment", "churn", f"--replicas={pods if up else 0}")


PROGRAMMING = "kubeproxy_network_programming_duration_seconds_bucket"


class Staller:
    """Stops kube-proxy for `seconds` once, the first time a pod of the namespace is terminating."""

    def __init__(self, kube: Cluster, seconds: float, timeline: Timeline) -> None:
        self.kube, self.seconds, self.timeline = kube, seconds, timeline
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Staller:
        if self.seconds:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.seconds + 10)

    def _run(self) -> None:
        from kubernetes import client

        with self.kube.api_client() as api:
            core = client.CoreV1Api(api)

            def leaving() -> set[str]:
                pods = core.list_namespaced_pod(NAMESPACE).items
                return {pod.metadata.name for pod in pods if pod.metadata.deletion_timestamp}

            already = leaving()  # the previous promotion's pods may still be draining
            while not self._done.wait(0.1):
                if leaving() - already:
                    break
            else:
                return
        with kube_proxy_stopped(self.kube):
            self.timeline.note(f"kube-proxy stopped for {self.seconds:g}s (a pod started leaving)")
            time.sleep(self.seconds)
        self.timeline.note("kube-proxy running again")


def programming_buckets(kube: Cluster) -> dict[float, float]:
    """kube-proxy's histogram of how long an endpoint change took to reach the node's rules
    (from the change, as the EndpointSlice records it, to the rules written): le -> count."""
    config = json.loads((Path(kube.run_dir) / "kube-proxy-config.json").read_text())
    with urllib.request.urlopen(f"http://{config['metricsBindAddress']}/metrics", timeout=5) as response:
        page = response.read().decode()
    found = {}
    for line in page.splitlines():
        if line.startswith(PROGRAMMING + "{") and 'ip_family="IPv4"' in line:
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            found[float(bound)] = float(line.rsplit(" ", 1)[1])
    return found


def programming_summary(before: dict[float, float], after: dict[float, float]) -> str:
    """The delays of the endpoint changes made between two readings: median, p99, most."""
    counts = sorted((bound, after[bound] - before.get(bound, 0.0)) for bound in after)
    total = counts[-1][1] if counts else 0
    if not total:
        return "no endpoint change recorded"

    def at(share: float) -> float:
        return next(bound for bound, count in counts if count >= share * total)

    return f"{total:.0f} endpoint changes: median <= {at(0.5):g} s, p99 <= {at(0.99):g} s, all <= {at(1.0):g} s"


def _history(kube: Cluster) -> list[Obj]:
    from kubernetes import client

    with kube.api_client() as api:
        body: Obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
            "modeldeploy.dev", "v1alpha1", NAMESPACE, "modeldeployments", "cancer"
        )
    status: Obj = body.get("status") or {}
    return list(status.get("history") or [])


def promote(kube: Cluster, address: str, version: str, digest: dict[str, str], args: argparse.Namespace) -> Obj:
    """One promotion to `version` under load, from the apply until the old pods are gone."""
    revision = max((entry.get("revision", 0) for entry in _history(kube)), default=0)
    with (
        Timeline(kube, NAMESPACE) as timeline,
        Load(address, workers=args.workers) as load,
        Staller(kube, args.stall_kube_proxy, timeline),
    ):
        time.sleep(3)
        started = time.monotonic()
        timeline.note(f"applying version {version}")
        kube.kubectl(
            "-n", NAMESPACE, "apply", "-f", "-", input=cancer(version, digest[version], replicas=2, rollout=ROLLOUT)
        )

        def promoted() -> Obj | None:
            newest = (_history(kube) or [{}])[0]
            return newest if newest.get("revision", 0) > revision else None

        entry = wait_for(f"version {version} decided", promoted, timeout=400, every=0.5)
        timeline.note(f"status: version {version} {entry.get('outcome')}")
        kube.kubectl("-n", NAMESPACE, "wait", "--for=condition=Ready", "mdep/cancer", "--timeout=120s")
        time.sleep(8)  # the leaving pods drain while the load goes on
        seconds = time.monotonic() - started
        failures = load.failures_seen()
        return {
            "version": version,
            "outcome": entry.get("outcome"),
            "seconds": round(seconds, 1),
            "requests": load.served(),
            "failed": load.failed(),
            "answers": dict(load.answers),
            "failures": [failure.describe() for failure in failures],
            "timeline": timeline.explain(load) if failures else "",
            "loadavg": os.getloadavg()[0],
        }


def summary(results: Obj) -> str:
    runs = results["runs"]
    failed_runs = [r for r in runs if r["failed"]]
    lines = [
        f"# Promotions under load, {results['date']}",
        "",
        f"Command: `{results['command']}`; {results['hog']} busy processes and {results['churn']} pods "
        f"scaled up and down beside it; kube-proxy stopped for {results['stall']} s as each promotion's first "
        "pod left (0: never); load average "
        f"{results['loadavg_at_start']:.2f} at the start, {results['loadavg_at_end']:.2f} at the end.",
        "",
        f"**{len(runs) - len(failed_runs)} of {len(runs)} promotions with 0 failed requests**; "
        f"{sum(r['failed'] for r in runs)} failed of {sum(r['requests'] for r in runs)} requests in all.",
        "",
        f"kube-proxy, from an endpoint change to the node's rules, over the series: {results['kube_proxy']}.",
        "",
        "| run | to version | outcome | requests | failed | took (s) | load average |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {n + 1} | {r['version']} | {r['outcome']} | {r['requests']} | {r['failed']} | {r['seconds']} "
            f"| {r['loadavg']:.2f} |"
            for n, r in enumerate(runs)
        ),
    ]
    for n, run in enumerate(failed_runs):
        lines += [
            "",
            f"## Failed requests in run {runs.index(run) + 1}" if n < 3 else "",
            "",
            "```",
            run["timeline"],
            "```",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d-%H%M")
    results: Obj = {
        "command": " ".join([".venv/bin/python", "benchmarks/promotions.py", *(argv or sys.argv[1:])]),
        "date": stamp,
        "hog": args.hog,
        "churn": args.churn,
        "stall": args.stall_kube_proxy,
        "runs": [],
    }
    operators, image = fresh_namespace_on_local_cluster(NAMESPACE)
    kube = operators.kube
    digest = cancer_digests()
    stop = multiprocessing.Event()
    hogs = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True) for _ in range(args.hog)]
    churning = threading.Event()
    churner = threading.Thread(target=_churn, args=(kube, args.churn, churning), daemon=True)
    if args.churn:
        kube.kubectl("delete", "namespace", CHURN_NAMESPACE, "--ignore-not-found", "--wait=true", "--timeout=120s")
        kube.kubectl("create", "namespace", CHURN_NAMESPACE)
        kube.kubectl("-n", CHURN_NAMESPACE, "apply", "-f", "-", input=churn_deployment(image, 0))
    try:
        operators.start("--serving-image", image, "--image-pull-policy", "IfNotPresent")
        kube.kubectl("-n", NAMESPACE, "apply", "-f", "-", input=cancer("1", digest["1"], replicas=2, rollout=ROLLOUT))
        kube.kubectl("-n", NAMESPACE, "wait", "--for=condition=Ready", "mdep/cancer", "--timeout=240s")
        address = kube.kubectl("-n", NAMESPACE, "get", "service", "cancer", "-o", "jsonpath={.spec.clusterIP}")
        for hog in hogs:
            hog.start()
        if args.churn:
            churner.start()
        results["loadavg_at_start"] = os.getloadavg()[0]
        programming_before = programming_buckets(kube)
        for n in range(args.runs):
            version = "2" if n % 2 == 0 else "1"
            run = promote(kube, address, version, digest, args)
            results["runs"].append(run)
            print(
                f"run {n + 1}/{args.runs}: to version {version} {run['outcome']} in {run['seconds']} s, "
                f"{run['failed']} failed of {run['requests']} (load average {run['loadavg']:.2f})",
                flush=True,
            )
            if run["failed"]:
                print(run["timeline"], flush=True)
                if args.stop_on_failure:
                    break
    finally:
        stop.set()
        churning.set()
        for hog in hogs:
            hog.join(timeout=5)
        if churner.is_alive():
            churner.join(timeout=30)
        kube.kubectl("delete", "namespace", CHURN_NAMESPACE, "--ignore-not-found", "--wait=false")
        operators.stop_all()
        kube.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false")
    results["loadavg_at_end"] = os.getloadavg()[0]
    results["kube_proxy"] = programming_summary(programming_before, programming_buckets(kube))
    out = REPO / "benchmarks" / "results" / f"promotions-{stamp}{'-' + args.tag if args.tag else ''}"
    out.with_suffix(".md").write_text(summary(results))
    write_raw(out, results)
    print(summary(results))


if __name__ == "__main__":
    main()
