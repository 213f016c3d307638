"""The operator at scale: N ModelDeployments applied at once, against a bulk client's floor.

One run, on a control-plane-only cluster of its own (etcd, API server, controller-manager,
scheduler; no node, so pods stay Pending and the operator's status says Progressing):

1. floor, for each N: a bulk client writes what the operator would write for N
   ModelDeployments that already exist: each one's Deployment and Service exactly as the
   operator's builders render them, and its first status (decide_status, as the operator
   computes it). The wall time of those 3N writes is the floor.
2. operator, for each N: a fresh operator process watching a fresh namespace; the bulk
   client creates N ModelDeployments at once; the time until lists show every one with its
   Deployment, its Service and status.observedGeneration == metadata.generation. Writes per
   resource from the operator's metric, cross-checked with the API server's
   apiserver_request_total; peak RSS during the burst, idle RSS once settled, then CPU
   and writes over an idle minute with all N present.
3. leak: one operator, rounds of create N / converge / delete all / wait until gone; the
   RSS after each round.

Writes results/operator-scale-<date>.md (the summary) and .json.gz (the raw data).
See README.md, "The operator at scale".
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from kube_bulk import Bulk, delta, model_deployment  # noqa: E402
from modeldeploy_operator.api.spec import ModelDeploymentSpec  # noqa: E402
from modeldeploy_operator.children.builders import build_children  # noqa: E402
from modeldeploy_operator.children.labels import deployment_name  # noqa: E402
from modeldeploy_operator.reconcile import now_iso  # noqa: E402
from modeldeploy_operator.settings import Settings  # noqa: E402
from modeldeploy_operator.status.decide import Reconciled, decide_status  # noqa: E402
from modeldeploy_operator.status.observe import Children  # noqa: E402
from process_stats import RssSampler, cpu_seconds, memory_kib  # noqa: E402
from raw_results import write_raw  # noqa: E402

Obj = dict[str, Any]
MIB = 1024
OPERATOR_WRITES = ("APPLY deployments", "APPLY services", "PATCH modeldeployments/status")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Operator:
    """`modeldeploy operator` in a subprocess, watching one namespace."""

    process: subprocess.Popen[bytes]
    port: int

    @classmethod
    def start(cls, kubeconfig: Path, namespace: str, log_path: Path, kopf_path: str | None) -> Operator:
        port = free_port()
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "MODELDEPLOY_HEALTH_PORT": str(port)}
        if kopf_path:
            env["PYTHONPATH"] = kopf_path
        with log_path.open("ab") as sink:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "modeldeploy_cli",
                    "operator",
                    "--namespaces",
                    namespace,
                    "--log-format",
                    "text",
                ],
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        operator = cls(process, port)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the operator exited with {process.returncode}; see {log_path}")
            try:
                operator.metrics()
                return operator
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"the operator's /metrics did not answer in 60 s; see {log_path}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as response:
            text = response.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("modeldeploy_operator_") and " " in line:
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def writes(self) -> dict[str, float]:
        prefix = 'modeldeploy_operator_api_writes_total{kind="'
        return {k[len(prefix) : -2]: v for k, v in self.metrics().items() if k.startswith(prefix)}

    def counters(self) -> tuple[float, float]:
        """(all writes, all reconciles): what must stop moving before the operator is idle."""
        values = self.metrics()
        writes = sum(v for k, v in values.items() if k.startswith("modeldeploy_operator_api_writes_total"))
        reconciles = sum(v for k, v in values.items() if k.startswith("modeldeploy_operator_reconciles_total"))
        return writes, reconciles

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def cluster_pids(cluster_dir: Path) -> dict[str, int]:
    """The control plane's processes, as the launcher recorded them."""
    return {path.stem: json.loads(path.read_text())["pid"] for path in sorted((cluster_dir / "pids").glob("*.json"))}


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of the control plane, the operator (when given) and this process."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return {name: cpu_seconds(pid) for name, pid in pids.items()} | {"bench client": own.ru_utime + own.ru_stime}


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    used = {name: round(after[name] - before[name], 1) for name in after}
    return used | {"total": round(sum(used.values()), 1)}


def mib(kib: int) -> float:
    return round(kib / MIB, 1)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def timed(call: Callable[[], Any]) -> float:
    started = time.monotonic()
    call()
    return time.monotonic() - started


def create_model_deployments(bulk: Bulk, namespace: str, n: int) -> list[Obj]:
    bodies = [model_deployment(namespace, f"m{i:04d}") for i in range(n)]
    return bulk.run_all([lambda body=body: bulk.create_model_deployment(body) for body in bodies])


def progress(bulk: Bulk, namespace: str) -> tuple[int, int, int, int]:
    """(ModelDeployments, with both objects, with a current observedGeneration, done)."""
    deployments = bulk.names(f"/apis/apps/v1/namespaces/{namespace}/deployments")
    services = bulk.names(f"/api/v1/namespaces/{namespace}/services")
    items = bulk.model_deployments(namespace)
    objects = current = done = 0
    for item in items:
        meta = item["metadata"]
        has_objects = deployment_name(meta["name"], "stable") in deployments and meta["name"] in services
        is_current = (item.get("status") or {}).get("observedGeneration") == meta.get("generation")
        objects += has_objects
        current += is_current
        done += has_objects and is_current
    return len(items), objects, current, done


def wait_done(bulk: Bulk, namespace: str, n: int, started: float, every: float, timeout: float) -> Obj:
    """Poll with lists until all n are done; the time is when the poll that saw it returned."""
    timeline: list[list[float]] = []
    objects_at: float | None = None
    while True:
        counts = progress(bulk, namespace)
        now = time.monotonic() - started
        timeline.append([round(now, 2), *counts])
        if objects_at is None and counts[1] >= n:
            objects_at = now
        if counts[3] >= n:
            return {"done_s": round(now, 2), "objects_s": round(objects_at or now, 2), "timeline": timeline}
        if now > timeout:
            raise TimeoutError(f"{namespace}: after {timeout:.0f}s only {counts} of {n}")
        time.sleep(every)


def wait_gone(bulk: Bulk, namespace: str, timeout: float = 600) -> float:
    started = time.monotonic()
    paths = (
        "/apis/modeldeploy.dev/v1alpha1/namespaces/{ns}/modeldeployments",
        "/apis/apps/v1/namespaces/{ns}/deployments",
        "/apis/apps/v1/namespaces/{ns}/replicasets",
        "/api/v1/namespaces/{ns}/services",
        "/api/v1/namespaces/{ns}/pods",
    )
    while time.monotonic() - started < timeout:
        if not any(bulk.names(path.format(ns=namespace)) for path in paths):
            return time.monotonic() - started
        time.sleep(1)
    raise TimeoutError(f"{namespace}: objects still there after {timeout:.0f}s")


def settle(operator: Operator, quiet: float, timeout: float) -> float:
    """Wait until the operator's writes and reconciles have not moved for `quiet` seconds."""
    started = last_change = time.monotonic()
    last = operator.counters()
    while time.monotonic() - started < timeout:
        time.sleep(1)
        now = operator.counters()
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change >= quiet:
            break
    return round(last_change - started, 1)


def floor(bulk: Bulk, n: int, namespace: str, pids: dict[str, int]) -> Obj:
    bulk.create_namespace(namespace)
    created_at = time.monotonic()
    created = create_model_deployments(bulk, namespace, n)
    create_s = time.monotonic() - created_at
    settings = Settings()  # what the operator runs with: the bench starts it with defaults
    writes: list[Callable[[], Any]] = []
    for body in created:
        meta, spec = body["metadata"], ModelDeploymentSpec.model_validate(body["spec"])
        status = decide_status(body, spec, Children(), settings, Reconciled(), now_iso()).dump()
        for desired in build_children(meta, spec, settings):
            writes.append(lambda desired=desired: bulk.create(desired))
        writes.append(lambda meta=meta, status=status: bulk.replace_status(namespace, meta["name"], status))
    before, load, cpu = bulk.server_writes(), loadavg(), cpu_snapshot(pids)
    floor_s = timed(lambda: bulk.run_all(writes))
    cpu = cpu_used(cpu, cpu_snapshot(pids))
    server = delta(bulk.server_writes(), before)
    counts = progress(bulk, namespace)
    if counts[3] != n:
        raise RuntimeError(f"floor {namespace}: only {counts} of {n} after the writes returned")
    result = {
        "n": n,
        "writes": len(writes),
        "floor_s": round(floor_s, 2),
        "model_deployments_create_s": round(create_s, 2),
        "server_writes": server,
        "cpu_seconds": cpu,
        "loadavg": load,
    }
    result["namespace_delete_s"] = round(bulk.delete_namespace(namespace), 1)
    log(f"floor N={n}: {floor_s:.1f}s for {len(writes)} writes (creating the MDs took {create_s:.1f}s)")
    return result


def operator_code() -> str:
    """The commit and any uncommitted change under operator/, read when an operator starts:
    the operator may change in the repo while a run goes on."""

    def git(*command: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *command], capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "operator/")
    return git("rev-parse", "--short", "HEAD") + (f" + uncommitted: {dirty}" if dirty else "")


def operator_run(bulk: Bulk, n: int, namespace: str, args: argparse.Namespace, run_dir: Path) -> Obj:
    bulk.create_namespace(namespace)
    code = operator_code()
    operator = Operator.start(args.kubeconfig, namespace, run_dir / f"operator-{namespace}.log", args.kopf_path)
    try:
        time.sleep(3)  # watches established
        start_rss = memory_kib(operator.pid)["VmRSS"]
        writes_before, server_before, load = operator.writes(), bulk.server_writes(), loadavg()
        pids = args.pids | {"operator": operator.pid}
        with RssSampler(operator.pid) as sampler:
            cpu = cpu_snapshot(pids)
            started = time.monotonic()
            create_model_deployments(bulk, namespace, n)
            apply_s = time.monotonic() - started
            done = wait_done(bulk, namespace, n, started, args.poll, args.timeout)
            cpu = cpu_used(cpu, cpu_snapshot(pids))
            writes_at_done = delta(operator.writes(), writes_before)
            settled_after = settle(operator, args.settle_quiet, args.timeout)
        peak_kib = max(sampler.peak_kib, memory_kib(operator.pid)["VmHWM"])
        writes = delta(operator.writes(), writes_before)
        server = delta(bulk.server_writes(), server_before)
        idle_rss = memory_kib(operator.pid)["VmRSS"]
        idle = idle_minute(bulk, operator, args.idle_seconds)
        events = json.loads(bulk.get(f"/apis/events.k8s.io/v1/namespaces/{namespace}/events"))["items"]
        ours = sum(1 for e in events if e.get("reportingController") == "modeldeploy.dev/operator")
    finally:
        operator.stop()
    total = sum(writes.values())
    result = {
        "n": n,
        "operator_code": code,
        "apply_s": round(apply_s, 2),
        **{k: v for k, v in done.items() if k != "timeline"},
        "writes": writes,
        "writes_at_done": writes_at_done,
        "writes_per_resource": round(total / n, 2),
        "writes_per_resource_by_kind": {k: round(v / n, 2) for k, v in writes.items()},
        "server_writes": server,
        "server_check": {k: server.get(k, 0.0) for k in OPERATOR_WRITES} | {"operator's events in namespace": ours},
        "settled_s_after_done": settled_after,
        "cpu_seconds_to_done": cpu,
        "rss_before_mib": mib(start_rss),
        "rss_peak_mib": mib(peak_kib),
        "rss_samples": sampler.samples,
        "rss_idle_mib": mib(idle_rss),
        **idle,
        "loadavg": load,
        "timeline": done["timeline"],
    }
    result["namespace_delete_s"] = round(bulk.delete_namespace(namespace), 1)
    log(
        f"operator N={n}: done in {result['done_s']}s (apply {apply_s:.1f}s), {result['writes_per_resource']} "
        f"writes/resource {writes}, RSS peak {result['rss_peak_mib']} MiB idle {result['rss_idle_mib']} MiB, "
        f"idle CPU {result['idle_cpu_percent']}% writes {result['idle_writes']}"
    )
    return result


def idle_minute(bulk: Bulk, operator: Operator, seconds: float) -> Obj:
    cpu, writes, server = cpu_seconds(operator.pid), operator.counters(), bulk.server_writes()
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    cpu_after, writes_after = cpu_seconds(operator.pid), operator.counters()
    server_moved = delta(bulk.server_writes(), server)
    return {
        "idle_seconds": round(elapsed, 1),
        "idle_cpu_percent": round(100 * (cpu_after - cpu) / elapsed, 2),
        "idle_writes": writes_after[0] - writes[0],
        "idle_reconciles": writes_after[1] - writes[1],
        "idle_server_writes_by_operator_kinds": {k: v for k, v in server_moved.items() if k in OPERATOR_WRITES},
        "idle_rss_end_mib": mib(memory_kib(operator.pid)["VmRSS"]),
    }


def leak(bulk: Bulk, args: argparse.Namespace, run_dir: Path) -> Obj:
    namespace = "bench-leak"
    bulk.create_namespace(namespace)
    code = operator_code()
    operator = Operator.start(args.kubeconfig, namespace, run_dir / "operator-leak.log", args.kopf_path)
    rounds: list[Obj] = []
    try:
        time.sleep(3)
        baseline = memory_kib(operator.pid)["VmRSS"]
        for index in range(args.leak_rounds):
            started = time.monotonic()
            create_model_deployments(bulk, namespace, args.leak_size)
            wait_done(bulk, namespace, args.leak_size, started, args.poll, args.timeout)
            settle(operator, args.settle_quiet, args.timeout)
            converged = memory_kib(operator.pid)
            bulk.delete_model_deployments(namespace)
            gone_s = wait_gone(bulk, namespace)
            settle(operator, args.settle_quiet, args.timeout)
            after = memory_kib(operator.pid)
            rounds.append(
                {
                    "round": index + 1,
                    "rss_with_all_mib": mib(converged["VmRSS"]),
                    "rss_after_delete_mib": mib(after["VmRSS"]),
                    "hwm_mib": mib(after["VmHWM"]),
                    "gone_s": round(gone_s, 1),
                    "seconds": round(time.monotonic() - started, 1),
                    "loadavg": loadavg(),
                }
            )
            log(f"leak round {index + 1}: {rounds[-1]}")
    finally:
        operator.stop()
    bulk.delete_namespace(namespace)
    after = [r["rss_after_delete_mib"] for r in rounds]
    return {
        "size": args.leak_size,
        "operator_code": code,
        "rss_baseline_mib": mib(baseline),
        "rounds": rounds,
        "growth_first_to_last_round_mib": round(after[-1] - after[0], 1),
        "growth_per_round_mib": round((after[-1] - after[0]) / max(len(after) - 1, 1), 1),
    }


def versions(bulk: Bulk) -> Obj:
    def sh(*command: str) -> str:
        return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()

    from importlib.metadata import version

    return {
        "kubernetes": json.loads(bulk.get("/version"))["gitVersion"],
        "kopf": version("kopf"),
        "kubernetes_client": version("kubernetes"),
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "cpu": sh("sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"),
        "commit": sh("git", "-C", str(REPO), "rev-parse", "--short", "HEAD"),
        "uncommitted_operator_changes": sh("git", "-C", str(REPO), "status", "--porcelain", "operator/"),
    }


def kopf_in_use(kopf_path: str | None) -> str:
    env = {**os.environ, **({"PYTHONPATH": kopf_path} if kopf_path else {})}
    code = "from importlib.metadata import version; import kopf; print(version('kopf'), kopf.__file__)"
    found = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return found.stdout.strip()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,1000", help="numbers of ModelDeployments, in order")
    parser.add_argument("--threads", type=int, default=16, help="the bulk client's thread pool")
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between progress lists")
    parser.add_argument("--settle-quiet", type=float, default=15, help="idle once counters are still this long")
    parser.add_argument("--leak-rounds", type=int, default=3, help="0 skips the leak check")
    parser.add_argument("--leak-size", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--cluster-dir", type=Path, default=Path("/tmp/md-bench-cluster"))
    parser.add_argument("--keep-cluster", action="store_true", help="leave the control plane running")
    parser.add_argument("--kopf-path", help="a folder with another kopf, put first on the operator's PYTHONPATH")
    parser.add_argument("--only", choices=("all", "leak"), default="all", help="leak: the leak check alone")
    parser.add_argument("--tag", default="", help="added to the result file names")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from e2e.cluster import launcher

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d-%H%M")
    name = f"operator-scale-{stamp}{'-' + args.tag if args.tag else ''}"
    run_dir = Path("/tmp") / name
    run_dir.mkdir(parents=True, exist_ok=True)
    results: Obj = {"command": " ".join([".venv/bin/python", "benchmarks/operator_scale.py", *(argv or sys.argv[1:])])}
    results["loadavg_at_start"] = loadavg()
    launcher.up(control_plane_only=True, run_dir=args.cluster_dir)
    try:
        args.kubeconfig = args.cluster_dir / "admin.kubeconfig"
        crd = REPO / "crds" / "modeldeployment.yaml"
        kubectl = Path(launcher.State.load(args.cluster_dir).bin_dir) / "kubectl"  # type: ignore[union-attr]
        env = {**os.environ, "KUBECONFIG": str(args.kubeconfig)}
        subprocess.run([kubectl, "apply", "--server-side", "--force-conflicts", "-f", crd], env=env, check=True)
        subprocess.run(
            [kubectl, "wait", "--for=condition=Established", "--timeout=60s", "crd/modeldeployments.modeldeploy.dev"],
            env=env,
            check=True,
        )
        bulk = Bulk(args.kubeconfig, args.threads)
        args.pids = cluster_pids(args.cluster_dir)
        results["versions"] = versions(bulk) | {"kopf_in_use": kopf_in_use(args.kopf_path)}
        results["settings"] = {k: str(v) for k, v in vars(args).items()}
        results["sizes"] = []
        if args.only == "all":
            results["warmup"] = floor(bulk, 50, "bench-warmup", args.pids)  # a cold API server is slower at first
            for n in [int(s) for s in args.sizes.split(",")]:
                results["sizes"].append(
                    {
                        "floor": floor(bulk, n, f"bench-floor-{n}", args.pids),
                        "operator": operator_run(bulk, n, f"bench-operator-{n}", args, run_dir),
                    }
                )
        if args.leak_rounds:
            results["leak"] = leak(bulk, args, run_dir)
    finally:
        results["loadavg_at_end"] = loadavg()
        if not args.keep_cluster:
            launcher.down(args.cluster_dir)
    out = HERE / "results" / name
    raw = write_raw(out, results)
    from operator_report import markdown

    text = markdown(results)
    out.with_name(f"{name}.md").write_text(text)
    print(text)
    log(f"wrote {raw} and {out}.md; operator logs in {run_dir}")


if __name__ == "__main__":
    main()
