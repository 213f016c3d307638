"""Canary rollouts on the full local cluster, under load, as a user runs them.

The operator runs as a process against the cluster, the serving pods run the project's
image, and a load generator sends real breast-cancer rows (scikit-learn's data set) to the
model's Service the whole time, counting every answer that is not a 200. Version 2 (a
better model) must be promoted without one failed request; version 3 (trained on flipped
labels) must be rolled back on its own on prediction shift, version 2 answering throughout.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from e2e.cluster import images
from e2e.cluster.pytest_plugin import Cluster
from e2e.load import Load
from e2e.manifests import cancer, cancer_digests
from e2e.operator_fixtures import OperatorLauncher, plugin, wait_for
from e2e.test_modeldeployment import get
from e2e.timeline import Timeline, assert_no_failed_requests
from tests.gitops.checks import argocd_health, kstatus

IN_IMAGE = images.MODELS_DIR
ROLLOUT = {
    "steps": [50],
    "interval": "20s",
    "progressDeadline": "3m",
    # maxLatencyP50Ratio is loose: the check is computed from live telemetry and its limit
    # recorded (a fresh canary on a busy machine can be a few times slower at the median).
    "analysis": {"minRequests": 20, "maxLatencyP99Ms": 2000, "maxLatencyP50Ratio": 50},
}


def mdep(version: str, sha256: str) -> str:
    return cancer(version, sha256, replicas=2, rollout=ROLLOUT)


def history(kube: Cluster, namespace: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = (get(kube, namespace, "mdep", "cancer").get("status") or {}).get("history") or []
    return result


def gitops(kube: Cluster, namespace: str, argocd: str, kstatus_status: str) -> str:
    """Argo CD's health (the chart's Lua) and kstatus on the live object; Argo CD's message."""
    live = get(kube, namespace, "mdep", "cancer")
    health = argocd_health(live)
    assert (health["status"], kstatus([live])[0]["status"]) == (argocd, kstatus_status), (health, live["status"])
    return health.get("message", "")


@pytest.mark.cluster
def test_a_better_model_is_promoted_under_load_and_a_flipped_one_rolled_back(
    operators: OperatorLauncher, namespace: str, serving_image: str
) -> None:
    kube = operators.kube
    digest = cancer_digests()
    operators.start("--serving-image", serving_image, "--image-pull-policy", "IfNotPresent")
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=mdep("1", digest["1"]))
    kube.kubectl("-n", namespace, "wait", "--for=condition=Ready", "mdep/cancer", "--timeout=240s")
    assert history(kube, namespace) == [], "the first version goes straight to stable"
    address = get(kube, namespace, "service", "cancer")["spec"]["clusterIP"]

    with Timeline(kube, namespace) as timeline, Load(address) as load:
        time.sleep(3)
        kube.kubectl("-n", namespace, "apply", "-f", "-", input=mdep("2", digest["2"]))
        wait_for(
            "a canary step",
            lambda: (get(kube, namespace, "mdep", "cancer")["status"].get("canary") or {}).get("stepStartedAt"),
            timeout=180,
        )
        shown = plugin(kube, namespace, "status", "cancer")
        assert "canary  version 2" in shown and "50% requested" in shown, shown
        gitops(kube, namespace, "Progressing", "InProgress")
        wait_for(
            "version 2 promoted",
            lambda: (history(kube, namespace) or [{}])[0].get("outcome") == "Promoted",
            timeout=300,
        )
        kube.kubectl("-n", namespace, "wait", "--for=condition=Ready", "mdep/cancer", "--timeout=120s")
        time.sleep(8)  # the canary's pods leave: requests keep being answered
        assert_no_failed_requests(load, timeline, "the promotion of version 2")
        assert load.versions["2"] > 0 and load.versions["1"] > 0
    promoted = history(kube, namespace)[0]
    assert (promoted["version"], promoted["decidedBy"]) == ("2", "analysis")
    judged = {c["check"]: c for c in promoted["analysis"]}
    assert judged["predictionShift"]["result"] == "Successful"
    median = judged["latencyP50Ratio"]
    assert (median["result"], median["limit"]) == ("Successful", 50) and median["value"] > 0, median
    status = get(kube, namespace, "mdep", "cancer")["status"]
    assert status["stable"]["version"] == "2" and "canary" not in status
    gitops(kube, namespace, "Healthy", "Current")

    with Timeline(kube, namespace) as timeline, Load(address) as load:
        time.sleep(3)
        kube.kubectl("-n", namespace, "apply", "-f", "-", input=mdep("3", digest["3"]))
        wait_for("version 3 rolled back", lambda: history(kube, namespace)[0].get("version") == "3", timeout=300)
        judged_at = time.monotonic()
        assert_no_failed_requests(load, timeline, "the rollback of version 3")

        def no_canary_endpoint() -> bool:
            slices = get(kube, namespace, "endpointslices", "-l", "kubernetes.io/service-name=cancer")["items"]
            return not any(
                (e.get("targetRef") or {}).get("name", "").startswith("cancer-canary")
                and (e.get("conditions") or {}).get("ready")
                for s in slices
                for e in s.get("endpoints") or []
            )

        wait_for("no canary endpoint left", no_canary_endpoint, timeout=30)
        print(f"rollback: no canary endpoint {time.monotonic() - judged_at:.1f}s after the status said so")
    rolled = history(kube, namespace)[0]
    assert (rolled["outcome"], rolled["decidedBy"], rolled["reason"]) == ("RolledBack", "analysis", "RolledBack")
    assert rolled["message"].startswith("predictionShift failed"), rolled["message"]
    status = get(kube, namespace, "mdep", "cancer")["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert (status["phase"], ready["status"], stalled["reason"]) == ("Degraded", "False", "RolledBack")
    assert status["stable"]["version"] == "2"
    assert "predictionShift failed" in gitops(kube, namespace, "Degraded", "Failed")
    events = kube.kubectl("-n", namespace, "get", "events", "--field-selector", "involvedObject.name=cancer")
    assert "RolledBack" in events and "predictionShift failed" in events
    shown = plugin(kube, namespace, "history", "cancer")
    assert "version 3 RolledBack by analysis" in shown and "version 2 Promoted by analysis" in shown, shown


@pytest.mark.cluster
def test_an_operator_killed_mid_rollout_resumes_at_the_same_step(
    operators: OperatorLauncher, namespace: str, serving_image: str
) -> None:
    """State lives in status: a SIGKILLed operator's successor carries on with the same rollout,
    no duplicate objects, and one history entry at the end."""
    kube = operators.kube
    digest = cancer_digests()
    flags = ("--serving-image", serving_image, "--image-pull-policy", "IfNotPresent")
    first = operators.start(*flags)
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=mdep("1", digest["1"]))
    kube.kubectl("-n", namespace, "wait", "--for=condition=Ready", "mdep/cancer", "--timeout=240s")
    address = get(kube, namespace, "service", "cancer")["spec"]["clusterIP"]
    with Timeline(kube, namespace) as timeline, Load(address) as load:
        kube.kubectl("-n", namespace, "apply", "-f", "-", input=mdep("2", digest["2"]))

        def stepping() -> dict[str, Any] | None:
            canary = get(kube, namespace, "mdep", "cancer")["status"].get("canary") or {}
            return canary if canary.get("stepStartedAt") else None

        before = wait_for("a canary step", stepping, timeout=180)
        operators.kill(first)
        operators.start(*flags)
        after = wait_for("the rollout to go on", lambda: get(kube, namespace, "mdep", "cancer")["status"], timeout=60)
        assert after["canary"]["revision"] == before["revision"] and after["canary"]["step"] == before["step"]
        wait_for(
            "version 2 promoted",
            lambda: (history(kube, namespace) or [{}])[0].get("outcome") == "Promoted",
            timeout=300,
        )
        assert_no_failed_requests(load, timeline, "a rollout whose operator was killed")
    deployments = get(kube, namespace, "deployments")["items"]
    assert [d["metadata"]["name"] for d in deployments] == ["cancer-stable"]
    (entry,) = history(kube, namespace)
    assert (entry["revision"], entry["version"]) == (before["revision"], "2")
