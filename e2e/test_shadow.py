"""The shadow step on the full local cluster, under load, as a user runs it.

`spec.rollout.shadow: {}`: before any live traffic moves, the stable pods mirror copies of
the live requests to the canary pods (held out of the Service by their readiness gate) and
compare the two answers on the same rows. Version 3 (trained on flipped labels) must be
rolled back in the shadow step on agreement, having answered no live request (its pods'
modeldeploy_requests_total stays 0 while they answer mirrored copies); version 2 (a better
model) must pass the shadow step, go on to the live steps and be promoted with no failed
request.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from typing import Any

import pytest

from e2e.cluster.pytest_plugin import Cluster
from e2e.load import Load
from e2e.manifests import cancer, cancer_digests
from e2e.operator_fixtures import OperatorLauncher, plugin, wait_for
from e2e.test_modeldeployment import get
from e2e.test_rollouts import history
from e2e.timeline import Timeline, assert_no_failed_requests

ROLLOUT = {
    "steps": [50],
    "interval": "20s",
    "progressDeadline": "4m",  # the kubelet may take a minute or more to refresh the shadow config
    "analysis": {"minRequests": 20, "maxLatencyP99Ms": 2000},
    "shadow": {},
}


def mdep(version: str, sha256: str) -> str:
    return cancer(version, sha256, replicas=2, rollout=ROLLOUT)


def counted(page: str, name: str) -> float:
    return sum(float(value) for value in re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", page, re.MULTILINE))


def canary_counts(kube: Cluster, namespace: str, version: str) -> tuple[float, float] | None:
    """(live requests, mirrored requests) the canary pods of `version` answered so far."""
    pods = get(kube, namespace, "pods", "-l", "modeldeploy.dev/track=canary")["items"]
    live = mirrored = 0.0
    found = False
    for pod in pods:
        if (pod["metadata"].get("labels") or {}).get("app.kubernetes.io/version") != version:
            continue
        ip = (pod.get("status") or {}).get("podIP")
        if not ip:
            continue
        try:
            with urllib.request.urlopen(f"http://{ip}:8080/metrics", timeout=3) as response:
                page = response.read().decode()
        except OSError:
            continue
        found = True
        live += counted(page, "modeldeploy_requests_total")
        mirrored += counted(page, "modeldeploy_mirrored_requests_total")
    return (live, mirrored) if found else None


def canary_view(kube: Cluster, namespace: str) -> str:
    """What the canary pods say of the copies they answered, by outcome, and the end of every
    serving pod's log (stable's says why the shadow refused copies): where a Failed shadow
    check's refusals came from, for the assertion's message."""
    said = []
    for pod in get(kube, namespace, "pods", "-l", "modeldeploy.dev/track=stable")["items"]:
        name = pod["metadata"]["name"]
        logs = kube.kubectl("-n", namespace, "logs", name, "-c", "server", "--tail=8", check=False)
        said.append(f"{name} (stable):\n{logs}")
    for pod in get(kube, namespace, "pods", "-l", "modeldeploy.dev/track=canary")["items"]:
        name, ip = pod["metadata"]["name"], (pod.get("status") or {}).get("podIP")
        try:
            with urllib.request.urlopen(f"http://{ip}:8080/metrics", timeout=3) as response:
                page = response.read().decode()
            mirrored = re.findall(r"^modeldeploy_mirrored_requests_total\{([^}]*)\} (\S+)$", page, re.MULTILINE)
        except OSError as error:
            mirrored = [("unreadable", str(error))]
        logs = kube.kubectl("-n", namespace, "logs", name, "-c", "server", "--tail=15", check=False)
        restarts = [c.get("restartCount", 0) for c in (pod.get("status") or {}).get("containerStatuses", [])]
        said.append(f"{name} (restarts {restarts}): {mirrored}\n{logs}")
    return "\n".join(said)


def canary(kube: Cluster, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = get(kube, namespace, "mdep", "cancer")["status"].get("canary") or {}
    return found


@pytest.mark.cluster
def test_a_flipped_model_is_rolled_back_in_the_shadow_step_and_a_better_one_promoted(
    operators: OperatorLauncher, namespace: str, serving_image: str
) -> None:
    kube = operators.kube
    digest = cancer_digests()
    operators.start("--serving-image", serving_image, "--image-pull-policy", "IfNotPresent")
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=mdep("1", digest["1"]))
    kube.kubectl("-n", namespace, "wait", "--for=condition=Ready", "mdep/cancer", "--timeout=240s")
    assert get(kube, namespace, "configmap", "cancer-shadow")["data"]["shadow.json"] == "", "mirroring off"
    address = get(kube, namespace, "service", "cancer")["spec"]["clusterIP"]

    with Timeline(kube, namespace) as timeline, Load(address) as load:
        time.sleep(3)
        kube.kubectl("-n", namespace, "apply", "-f", "-", input=mdep("3", digest["3"]))
        wait_for("the shadow step's window", lambda: canary(kube, namespace).get("stepStartedAt"), timeout=240)
        shadowed = canary(kube, namespace)
        assert shadowed["shadow"] is True and shadowed["requestedWeight"] == 0, shadowed
        config = json.loads(get(kube, namespace, "configmap", "cancer-shadow")["data"]["shadow.json"])
        assert config["version"] == "3" and config["target"].startswith("http://cancer-shadow."), config
        shown = plugin(kube, namespace, "status", "cancer")
        assert "shadow step before step 1 of 1" in shown and "no live traffic (weight 0%)" in shown, shown
        seen: list[tuple[float, float]] = []

        def rolled_back() -> bool:
            counts = canary_counts(kube, namespace, "3")
            if counts is not None:
                seen.append(counts)
            return (history(kube, namespace) or [{}])[0].get("version") == "3"

        wait_for("version 3 rolled back in the shadow step", rolled_back, timeout=180, every=1.0)
        assert_no_failed_requests(load, timeline, "the shadow step of version 3")
        assert load.versions["3"] == 0, "no user was served by version 3"
    assert seen, "the canary pods' telemetry was never read"
    live, mirrored = seen[-1]
    assert live == 0 and mirrored > 0, f"the canary answered {live} live and {mirrored} mirrored requests"
    rolled = history(kube, namespace)[0]
    assert (rolled["outcome"], rolled["reason"], rolled.get("shadow")) == ("RolledBack", "RolledBack", True), rolled
    assert rolled["message"].startswith("shadow step: agreement failed"), rolled["message"]
    agreement = next(c for c in rolled["analysis"] if c["check"] == "agreement")
    assert agreement["value"] < 0.5 and agreement["limit"] == 0.9, agreement
    assert get(kube, namespace, "configmap", "cancer-shadow")["data"]["shadow.json"] == "", "mirroring off again"
    events = kube.kubectl("-n", namespace, "get", "events", "--field-selector", "involvedObject.name=cancer")
    assert "agreement failed" in events, events
    assert "in the shadow step" in plugin(kube, namespace, "history", "cancer")

    with Timeline(kube, namespace) as timeline, Load(address) as load:
        time.sleep(3)
        kube.kubectl("-n", namespace, "apply", "-f", "-", input=mdep("2", digest["2"]))
        wait_for("the shadow step", lambda: canary(kube, namespace).get("shadow"), timeout=240)
        views: list[str] = []

        def through() -> bool:
            latest = canary(kube, namespace)
            if latest.get("shadow") and latest.get("stepStartedAt"):
                views[:] = [canary_view(kube, namespace)]
            rolled_back = (history(kube, namespace) or [{}])[0].get("version") == "2"
            assert not rolled_back, f"{history(kube, namespace)[0]['message']}\n{views[-1] if views else ''}"
            return latest.get("requestedWeight") == 50

        wait_for("version 2 through the shadow step", through, timeout=240, every=2.0)
        passed = {c["check"]: c for c in canary(kube, namespace)["analysis"]}
        assert passed["agreement"]["result"] == "Successful" and passed["agreement"]["value"] >= 0.9, passed
        wait_for(
            "version 2 promoted",
            lambda: (history(kube, namespace) or [{}])[0].get("outcome") == "Promoted",
            timeout=300,
        )
        kube.kubectl("-n", namespace, "wait", "--for=condition=Ready", "mdep/cancer", "--timeout=120s")
        time.sleep(8)
        assert_no_failed_requests(load, timeline, "the rollout of version 2")
        assert load.versions["2"] > 0
    promoted = history(kube, namespace)[0]
    assert (promoted["version"], promoted["decidedBy"], promoted.get("shadow")) == ("2", "analysis", None)
