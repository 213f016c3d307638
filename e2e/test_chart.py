"""The Helm chart on the full local cluster: the operator runs in a pod, as users install it.

This proves the chart renders manifests the API server accepts, the operator works with
only the RBAC the chart grants it (least privilege), and a ModelDeployment it reconciles
from inside the cluster serves predictions.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from e2e.cluster import images
from e2e.cluster.pytest_plugin import Cluster
from e2e.operator_fixtures import wait_for
from e2e.test_modeldeployment import get, predict

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "modeldeploy"


def helm(kube: Cluster, tmp: Path, *args: str) -> str:
    env = {
        **os.environ,
        "KUBECONFIG": str(kube.kubeconfig),
        "HELM_CACHE_HOME": str(tmp / "cache"),
        "HELM_CONFIG_HOME": str(tmp / "config"),
        "HELM_DATA_HOME": str(tmp / "data"),
    }
    result = subprocess.run(
        [str(kube.bin_dir / "helm"), *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture
def release(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The chart installed in its own namespace, watching the test's namespace."""
    reference = images.import_project_image(cluster.run_dir)
    repository, tag = reference.rsplit(":", 1)
    system = f"{namespace[:40]}-sys"
    cluster.kubectl("create", "namespace", system)
    values = [
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
        "--set", f"watchNamespaces={{{namespace}}}", "--set", "logFormat=text",
    ]  # fmt: skip
    try:
        helm(cluster, tmp_path, "install", "modeldeploy", str(CHART), "--namespace", system, *values, "--wait",
             "--timeout", "180s")  # fmt: skip
        yield system, reference
    finally:
        subprocess.run(
            [str(cluster.bin_dir / "helm"), "uninstall", "modeldeploy", "--namespace", system],
            env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "HELM_CACHE_HOME": str(tmp_path / "cache"),
                 "HELM_CONFIG_HOME": str(tmp_path / "config"), "HELM_DATA_HOME": str(tmp_path / "data")},
            capture_output=True, check=False, timeout=120,
        )  # fmt: skip
        cluster.kubectl("delete", "namespace", system, "--wait=false", check=False)


def test_chart_renders_what_the_api_server_accepts(control_plane: Cluster, namespace: str, tmp_path: Path) -> None:
    for values in ([], ["--set", f"watchNamespaces={{{namespace}}}"]):
        manifests = helm(
            control_plane, tmp_path, "template", "modeldeploy", str(CHART), "--namespace", namespace, *values
        )
        control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=manifests)


def test_operator_installed_by_the_chart_serves_a_model(
    cluster: Cluster, namespace: str, release: tuple[str, str]
) -> None:
    system, _ = release
    account = f"system:serviceaccount:{system}:modeldeploy-operator"

    def can(verb: str, what: str, where: str = namespace, *extra: str) -> bool:
        answer = cluster.kubectl("auth", "can-i", verb, what, "-n", where, "--as", account, *extra, check=False)
        return answer.strip() == "yes"

    assert can("patch", "deployments") and can("patch", "modeldeployments", namespace, "--subresource=status")
    assert can("delete", "deployments")  # a finished canary is deleted
    assert not can("delete", "pods") and not can("get", "secrets") and not can("update", "modeldeployments")
    assert not can("patch", "deployments", where="default")  # only the namespaces it watches

    example = (REPO / "examples" / "breast-cancer.yaml").read_text()
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=example)
    cluster.kubectl("-n", namespace, "wait", "--for=condition=Ready", "mdep/breast-cancer", "--timeout=240s")
    rows = np.asarray(images.example_request_rows(), dtype=np.float32)
    answer = predict(cluster, namespace, "breast-cancer", rows)
    assert answer["model_name"] == "breast-cancer" and answer["model_version"] == "1"
    status = get(cluster, namespace, "mdep", "breast-cancer")["status"]
    assert [c["type"] for c in status["conditions"]] == ["Ready"]  # no Reconciling/Stalled when all is well

    pods = get(cluster, system, "pods")["items"]
    (operator,) = pods
    security = operator["spec"]["containers"][0]["securityContext"]
    assert security["readOnlyRootFilesystem"] and security["allowPrivilegeEscalation"] is False
    logs = cluster.kubectl("-n", system, "logs", operator["metadata"]["name"])
    assert "Forbidden" not in logs and "403" not in logs, logs[-3000:]
    name = operator["metadata"]["name"]
    wait_for(
        "the operator's readiness", lambda: get(cluster, system, "pod", name)["status"]["containerStatuses"][0]["ready"]
    )
