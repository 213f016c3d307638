"""A rollout through a Gateway API HTTPRoute on the full local cluster, with real pods.

The Gateway API CRDs are installed (from their Go module) but no Gateway implementation
runs here, so nothing routes requests by the weights; what is checked is what the operator
is responsible for: the weights it sets on the user's route, step by step, only once the
canary's pods are in their Service, read back into status, and all to stable again after a
promotion or an abort. The steps are moved on with `kubectl modeldeploy promote` (judging
needs traffic through a Gateway, which this cluster does not have).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from e2e.cluster.pytest_plugin import Cluster
from e2e.manifests import cancer, cancer_digests
from e2e.operator_fixtures import OperatorLauncher, plugin, wait_for
from e2e.test_modeldeployment import get

ROUTE = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "cancer-public"},
    "spec": {
        "parentRefs": [{"name": "public-gateway", "namespace": "infra"}],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/v2/models/cancer"}}],
                "backendRefs": [{"name": "cancer", "port": 80}],
            }
        ],
    },
}


def mdep(version: str, sha256: str) -> str:
    rollout = {"steps": [10, 50], "interval": "10m", "traffic": {"httpRoute": {"name": "cancer-public"}}}
    return cancer(version, sha256, replicas=2, rollout=rollout)


def weights(kube: Cluster, namespace: str) -> list[tuple[str, int]]:
    rule = get(kube, namespace, "httproute", "cancer-public")["spec"]["rules"][0]
    return [(ref["name"], ref.get("weight", 1)) for ref in rule["backendRefs"]]


def canary(kube: Cluster, namespace: str) -> dict[str, Any]:
    result: dict[str, Any] = get(kube, namespace, "mdep", "cancer").get("status", {}).get("canary") or {}
    return result


def step_verified(kube: Cluster, namespace: str, weight: int) -> bool:
    now = canary(kube, namespace)
    return now.get("requestedWeight") == weight and bool(now.get("stepStartedAt"))


@pytest.mark.cluster
def test_route_weights_follow_the_steps_and_return_to_stable(
    gateway_api: Cluster, operators: OperatorLauncher, namespace: str, serving_image: str
) -> None:
    kube = operators.kube
    digest = cancer_digests()
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(ROUTE))
    operators.start("--serving-image", serving_image, "--image-pull-policy", "IfNotPresent")
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=mdep("1", digest["1"]))
    kube.kubectl("-n", namespace, "wait", "--for=condition=Ready", "mdep/cancer", "--timeout=240s")
    assert weights(kube, namespace) == [("cancer-stable", 100)]

    kube.kubectl("-n", namespace, "apply", "-f", "-", input=mdep("2", digest["2"]))
    wait_for("step 1 verified on the route", lambda: step_verified(kube, namespace, 10), timeout=240)
    assert weights(kube, namespace) == [("cancer-stable", 90), ("cancer-canary", 10)]
    assert canary(kube, namespace)["actualWeight"] == 10, "exact: not 33% as one pod beside two would give"
    assert get(kube, namespace, "deployment", "cancer-canary")["spec"]["replicas"] == 1
    slices = get(kube, namespace, "endpointslices", "-l", "kubernetes.io/service-name=cancer")["items"]
    names = {(e.get("targetRef") or {}).get("name", "") for s in slices for e in s.get("endpoints") or []}
    assert names and not any(name.startswith("cancer-canary") for name in names), "the Service NAME is stable's"

    plugin(kube, namespace, "promote", "cancer")
    wait_for("step 2 verified on the route", lambda: step_verified(kube, namespace, 50), timeout=120)
    assert weights(kube, namespace) == [("cancer-stable", 50), ("cancer-canary", 50)]

    plugin(kube, namespace, "promote", "cancer")
    wait_for("version 2 promoted", lambda: get(kube, namespace, "mdep", "cancer")["status"]["history"], timeout=300)
    promoted = get(kube, namespace, "mdep", "cancer")["status"]["history"][0]
    assert promoted["outcome"] == "Promoted", promoted
    assert weights(kube, namespace) == [("cancer-stable", 100)]
    wait_for(
        "the canary Service gone",
        lambda: not kube.kubectl("-n", namespace, "get", "services", "-o", "name").count("cancer-canary"),
    )

    kube.kubectl("-n", namespace, "apply", "-f", "-", input=mdep("3", digest["3"]))
    wait_for("version 3 at step 1", lambda: step_verified(kube, namespace, 10), timeout=240)
    assert weights(kube, namespace) == [("cancer-stable", 90), ("cancer-canary", 10)]
    plugin(kube, namespace, "abort", "cancer")
    wait_for("version 3 aborted", lambda: not canary(kube, namespace), timeout=60)
    assert weights(kube, namespace) == [("cancer-stable", 100)]
    assert get(kube, namespace, "mdep", "cancer")["status"]["history"][0]["outcome"] == "Aborted"
