"""Fixtures that run the real operator process against the local cluster (a pytest plugin)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from e2e.cluster.pytest_plugin import Cluster

REPO = Path(__file__).resolve().parents[1]
CRD = REPO / "crds" / "modeldeployment.yaml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60, every: float = 0.2) -> Any:
    """Poll until check() returns something truthy; fail with what was awaited."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as error:  # the object may not exist yet
            last = error
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")


def run_plugin(kube: Cluster, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl modeldeploy -n NAMESPACE ARGS` as this tree's code (PYTHONPATH is passed on)."""
    env = {"KUBECONFIG": str(kube.kubeconfig), "PATH": "/usr/bin:/bin"}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run(
        [sys.executable, "-m", "modeldeploy_cli.plugin", "-n", namespace, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def plugin(kube: Cluster, namespace: str, *args: str) -> str:
    """What the plugin prints for a command that must succeed."""
    result = run_plugin(kube, namespace, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="session")
def crd_installed(control_plane: Cluster) -> Cluster:
    kube = control_plane
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/modeldeployments.modeldeploy.dev")
    return kube


@pytest.fixture(scope="session")
def gateway_api(control_plane: Cluster) -> Cluster:
    """The Gateway API's standard-channel CRDs (HTTPRoute, Gateway, ...) from their Go module,
    installed into the control plane with server-side apply. No Gateway implementation runs:
    the API server stores and validates routes; nothing routes traffic by them."""
    from e2e.cluster import gateway_api

    kube = control_plane
    for path in gateway_api.standard_crds():
        kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/httproutes.gateway.networking.k8s.io")
    return kube


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    health_port: int
    log: Path

    def metric(self, name: str, labels: str = "") -> float:
        """Sum of a metric's samples whose label text contains `labels`."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in "{ ") and labels in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


class OperatorLauncher:
    """Starts and stops `modeldeploy operator` processes watching one namespace."""

    def __init__(self, kube: Cluster, namespace: str, tmp: Path) -> None:
        self.kube, self.namespace, self.tmp = kube, namespace, tmp
        self.running: list[OperatorProcess] = []

    def start(self, *extra: str) -> OperatorProcess:
        port = free_port()
        log = self.tmp / f"operator-{len(self.running)}.log"
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kube.kubeconfig),
            "MODELDEPLOY_NAMESPACES": self.namespace,
            "MODELDEPLOY_HEALTH_PORT": str(port),
            "MODELDEPLOY_SERVING_IMAGE": os.environ.get("MODELDEPLOY_TEST_IMAGE", "modeldeploy.local/modeldeploy:test"),
            "MODELDEPLOY_LOG_FORMAT": "text",
        }
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "modeldeploy_cli", "operator", *extra],
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        operator = OperatorProcess(process, port, log)
        self.running.append(operator)

        def healthy() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the operator exited with {process.returncode}:\n{operator.logs()}")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                return response.status == 200

        try:
            wait_for("the operator's /healthz", healthy, timeout=60)
        except AssertionError as error:  # still running but not healthy: its log says where it is
            raise AssertionError(f"{error}\nthe operator's log so far:\n{operator.logs()}") from None
        return operator

    def kill(self, operator: OperatorProcess, sig: int = signal.SIGKILL) -> None:
        operator.process.send_signal(sig)
        operator.process.wait(timeout=30)

    def stop_all(self) -> None:
        for operator in self.running:
            if operator.process.poll() is None:
                operator.process.terminate()
                try:
                    operator.process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    operator.process.kill()
                    operator.process.wait()


@pytest.fixture(scope="session")
def serving_image(cluster: Cluster) -> str:
    """The project's image, built without Docker and imported into the node's containerd."""
    from e2e.cluster import images

    return images.import_project_image(cluster.run_dir)


@pytest.fixture
def operators(crd_installed: Cluster, namespace: str, tmp_path: Path) -> Iterator[OperatorLauncher]:
    launcher = OperatorLauncher(crd_installed, namespace, tmp_path)
    yield launcher
    launcher.stop_all()


def fresh_namespace_on_local_cluster(namespace: str) -> tuple[OperatorLauncher, str]:
    """For the cluster benchmarks: the local cluster (brought up when it is not), the project
    image in its containerd, the CRD, and `namespace` made anew; an operator launcher for it
    and the image reference."""
    from e2e.cluster import images, launcher, settings

    run_dir = settings.run_dir()
    state = launcher.State.load(run_dir)
    if state is None or not launcher.healthy(run_dir, state) or not state.node:
        print("bringing the local cluster up", flush=True)
        state = launcher.up(control_plane_only=False, run_dir=run_dir)
    kube = Cluster(run_dir, run_dir / "admin.kubeconfig", Path(state.bin_dir), state.node)
    image = images.import_project_image(run_dir)
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    kube.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=true", "--timeout=120s")
    kube.kubectl("create", "namespace", namespace)
    return OperatorLauncher(kube, namespace, Path(tempfile.mkdtemp(prefix=f"{namespace}-"))), image
