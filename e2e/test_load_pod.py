"""The docs' traffic recipe on the local cluster: `modeldeploy load` in a pod of the serving
image, sending the reference rows shipped in the image to the model's Service by name,
gives a canary enough traffic to be promoted, and its log shows both versions answering
(README.md's canary section, docs/rollouts.md "No traffic, no verdict")."""

from __future__ import annotations

import re
from typing import Any

import pytest

from e2e.cluster.pytest_plugin import Cluster
from e2e.manifests import cancer, cancer_digests
from e2e.operator_fixtures import OperatorLauncher, wait_for
from e2e.test_modeldeployment import get

ROLLOUT = {"steps": [50], "interval": "20s", "progressDeadline": "3m", "analysis": {"minRequests": 20}}
REFERENCE_ROWS = "/opt/modeldeploy/models/breast-cancer-reference.csv"


@pytest.mark.cluster
def test_a_load_pod_from_the_docs_gets_a_canary_promoted(
    operators: OperatorLauncher, namespace: str, serving_image: str
) -> None:
    kube = operators.kube
    digest = cancer_digests()
    operators.start("--serving-image", serving_image, "--image-pull-policy", "IfNotPresent")
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=cancer("1", digest["1"], replicas=2, rollout=ROLLOUT))
    kube.kubectl("-n", namespace, "wait", "--for=condition=Ready", "mdep/cancer", "--timeout=240s")
    # As the docs do: the image of the model's own pods, the Service by name.
    image = kube.kubectl(
        "-n", namespace, "get", "deploy", "cancer-stable", "-o", "jsonpath={.spec.template.spec.containers[0].image}"
    ).strip()
    assert image == serving_image
    kube.kubectl(
        "-n", namespace, "run", "cancer-load", "--restart=Never", f"--image={image}",
        "--image-pull-policy=IfNotPresent", "--", "load", "http://cancer", "--model", "cancer",
        "--data", REFERENCE_ROWS, "--duration", "10m",
    )  # fmt: skip
    wait_for("the load's first progress line", lambda: "answered (version 1: " in log(kube, namespace), timeout=120)
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=cancer("2", digest["2"], replicas=2, rollout=ROLLOUT))

    def promoted() -> dict[str, Any] | None:
        history = (get(kube, namespace, "mdep", "cancer").get("status") or {}).get("history") or []
        return history[0] if history else None

    entry = wait_for("version 2 promoted on the load pod's traffic", promoted, timeout=300)
    assert (entry["version"], entry["outcome"], entry["decidedBy"]) == ("2", "Promoted", "analysis"), entry
    wait_for("a progress line after the promotion", lambda: "version 2: " in log(kube, namespace), timeout=60)
    last = log(kube, namespace).splitlines()[-1]
    counts = {v: int(n) for v, n in re.findall(r"version (\d+): (\d+)", last)}
    assert counts.get("1", 0) > 0 and counts.get("2", 0) > 0, last
    assert last.endswith(", 0 failed"), last
    kube.kubectl("-n", namespace, "delete", "pod", "cancer-load", "--wait=false")


def log(kube: Cluster, namespace: str) -> str:
    return str(kube.kubectl("-n", namespace, "logs", "pod/cancer-load", check=False))
