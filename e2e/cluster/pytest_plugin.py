"""pytest fixtures that give tests a real Kubernetes: the control plane, or the full
cluster with a node, and a fresh namespace per test.

Two tiers, each a marker, so a developer can run one (`pytest -m controlplane`):
- `controlplane`: etcd, API server, controller-manager and scheduler; no pods run.
- `cluster`: the same plus containerd, kubelet and kube-proxy; pods run.
A test that uses the `control_plane` or `cluster` fixture gets the marker by itself.

The session fixtures reuse a healthy cluster that is already up (for instance from
`python -m e2e.cluster up`), and otherwise bring one up and take it down at the end of
the session. Set MODELDEPLOY_KEEP_CLUSTER=1 to leave a cluster they started running.

Register with `pytest_plugins = ["e2e.cluster.pytest_plugin"]` in the top conftest.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from e2e.cluster import launcher, settings

TIERS = {"control_plane": "controlplane", "cluster": "cluster"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "controlplane: needs the local API server (no node); brought up by the control_plane fixture"
    )
    config.addinivalue_line(
        "markers", "cluster: needs the full local cluster with a node that runs pods; brought up by the cluster fixture"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by the tier its fixtures need, so `-m` selects by tier."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if "cluster" in names:
            item.add_marker(pytest.mark.cluster)
        elif "control_plane" in names:
            item.add_marker(pytest.mark.controlplane)


@dataclass(frozen=True)
class Cluster:
    """A running local cluster as the tests see it."""

    run_dir: Path
    kubeconfig: Path
    bin_dir: Path
    node: bool

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> str:
        """Run kubectl against this cluster and return its standard output."""
        result = subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def api_client(self) -> Any:
        """A `kubernetes` ApiClient for the admin user (system:masters)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]

    @property
    def server(self) -> str:
        return str(self.api_client().configuration.host)


class _Provider:
    """Brings the cluster up once per session and remembers whether it must go down."""

    def __init__(self) -> None:
        self.started_here = False

    def provide(self, node: bool) -> Cluster:
        run_dir = settings.run_dir()
        state = launcher.State.load(run_dir)
        ready = state is not None and launcher.healthy(run_dir, state)
        if not (ready and state is not None and (state.node or not node)):
            state = launcher.up(control_plane_only=not node, run_dir=run_dir)
            self.started_here = True
        return Cluster(run_dir, run_dir / "admin.kubeconfig", Path(state.bin_dir), state.node)

    def finish(self) -> None:
        if self.started_here and not os.environ.get("MODELDEPLOY_KEEP_CLUSTER"):
            launcher.down(settings.run_dir())
            self.started_here = False


@pytest.fixture(scope="session")
def _cluster_provider() -> Iterator[_Provider]:
    provider = _Provider()
    yield provider
    provider.finish()


@pytest.fixture(scope="session")
def control_plane(_cluster_provider: _Provider) -> Cluster:
    """The control plane (a full cluster already running is reused as it is)."""
    return _cluster_provider.provide(node=False)


@pytest.fixture(scope="session")
def cluster(_cluster_provider: _Provider) -> Cluster:
    """The full cluster with a Ready node (added to a running control plane if needed)."""
    return _cluster_provider.provide(node=True)


@pytest.fixture
def kube(request: pytest.FixtureRequest) -> Cluster:
    """Whichever tier the test is marked with; the control plane when unmarked."""
    if request.node.get_closest_marker("cluster"):
        return request.getfixturevalue("cluster")  # type: ignore[no-any-return]
    return request.getfixturevalue("control_plane")  # type: ignore[no-any-return]


@pytest.fixture
def namespace(kube: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting)."""
    from kubernetes import client

    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{slug}-{uuid.uuid4().hex[:6]}"
    with kube.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        _wait_for_default_service_account(core, name)
        yield name
        core.delete_namespace(name)


def _wait_for_default_service_account(core: Any, namespace: str) -> None:
    """Pods are refused until the controller-manager has made the `default` account."""
    from kubernetes.client.exceptions import ApiException

    deadline = time.monotonic() + 30
    while True:
        try:
            core.read_namespaced_service_account("default", namespace)
            return
        except ApiException as error:
            if error.status != 404 or time.monotonic() > deadline:
                raise
        time.sleep(0.2)
